"""Clinical notes of the cohort's stays, flagged per task by its prediction time."""


rule notes:
    input:
        notes=parquet("notes"),
        cohort="results/{dataset}/cohort.parquet",
    output:
        "results/{dataset}/notes.parquet",
    params:
        hours=config["timeseries"]["hours"],
        readmission_definition=config["cohort"]["readmission"]["definition"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/notes.log",
    script:
        "../scripts/notes.py"
