"""Abnormal time-series values as text entities ("heart rate too high")."""


rule abnormal:
    input:
        events="results/{dataset}/events.parquet",
        cohort=lambda w: f"{data_dir(w)}/cohort.parquet",
        terms=repo_path(config["abnormal"]["terms"]),
    output:
        "results/{dataset}/abnormal.parquet",
    params:
        threshold=config["abnormal"]["z_threshold"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/abnormal.log",
    script:
        "../scripts/abnormal.py"
