"""The ICU-stay cohort with its labels and split."""


rule cohort:
    input:
        patients=parquet("patients"),
        admissions=parquet("admissions"),
        icustays=parquet("icustays"),
        events="results/{dataset}/events.parquet",
        meds_labels=lambda w: list(meds_labels(w.dataset).values()),
    output:
        cohort="results/{dataset}/cohort.parquet",
        meta="results/{dataset}/cohort.json",
    params:
        settings=cohort_settings(),
        labels=lambda w: meds_labels(w.dataset),
        hours=config["timeseries"]["hours"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/cohort.log",
    script:
        "../scripts/cohort.py"
