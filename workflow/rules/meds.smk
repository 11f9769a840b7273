"""The cohort, its labels and the models' predictions as MEDS (emerge_ehr.meds), for MEDS tools such as ACES and
meds-evaluation. Part of `all` where `meds.export` says (`auto`: real datasets only); any file can be asked for."""

MEDS_DIR = "results/{dataset}/meds"


rule meds_export:
    input:
        patients=parquet("patients"),
        admissions=parquet("admissions"),
        icustays=parquet("icustays"),
        events="results/{dataset}/events.parquet",
        cohort="results/{dataset}/cohort.parquet",
        notes="results/{dataset}/notes.parquet",
        variables=VARIABLES,
    output:
        data=[f"{MEDS_DIR}/data/{split}/0.parquet" for split in MEDS_SPLITS],
        codes=f"{MEDS_DIR}/metadata/codes.parquet",
        splits=f"{MEDS_DIR}/metadata/subject_splits.parquet",
        dataset=f"{MEDS_DIR}/metadata/dataset.json",
    params:
        out_dir=MEDS_DIR,
    resources:
        mem_mb=8000,
    conda:
        "../../envs/meds.yaml"
    log:
        "logs/{dataset}/meds/export.log",
    script:
        "../scripts/meds_export.py"


rule meds_labels:
    input:
        "results/{dataset}/cohort.parquet",
    output:
        labels=f"{MEDS_DIR}/labels/{{task}}.parquet",
        stays=f"{MEDS_DIR}/labels/{{task}}_stays.parquet",
    params:
        hours=config["timeseries"]["hours"],
        readmission_definition=config["cohort"]["readmission"]["definition"],
    conda:
        "../../envs/meds.yaml"
    log:
        "logs/{dataset}/meds/labels/{task}.log",
    script:
        "../scripts/meds_labels.py"


rule meds_predictions:
    input:
        runs=lambda w: flat([meds_run(w)]),
        labels=f"{MEDS_DIR}/labels/{{task}}.parquet",
        stays=f"{MEDS_DIR}/labels/{{task}}_stays.parquet",
    output:
        f"{MEDS_DIR}/predictions/{{task}}/{{model}}/seed{{seed}}.parquet",
    params:
        run=meds_run,
    conda:
        "../../envs/meds.yaml"
    log:
        "logs/{dataset}/meds/predictions/{task}/{model}/seed{seed}.log",
    script:
        "../scripts/meds_predictions.py"
