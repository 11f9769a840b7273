"""Chart and lab events of the first hours, hourly bins and the model's input array."""


rule events:
    input:
        chartevents=parquet("chartevents"),
        labevents=parquet("labevents") if config["timeseries"]["use_labevents"] else [],
        patients=parquet("patients"),
        admissions=parquet("admissions"),
        icustays=parquet("icustays"),
        variables=VARIABLES,
    output:
        "results/{dataset}/events.parquet",
    params:
        hours=config["timeseries"]["hours"],
        settings=cohort_settings(),
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/events.log",
    script:
        "../scripts/events.py"


rule timeseries:
    input:
        events="results/{dataset}/events.parquet",
        cohort=lambda w: f"{data_dir(w)}/cohort.parquet",
        variables=VARIABLES,
    output:
        hourly="results/{dataset}/timeseries.parquet",
        features="results/{dataset}/features.npy",
        stats="results/{dataset}/feature_stats.json",
    params:
        hours=config["timeseries"]["hours"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/timeseries.log",
    script:
        "../scripts/timeseries.py"
