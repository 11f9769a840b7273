"""Test-set metrics with bootstrap confidence intervals, and the comparison table."""


rule evaluate:
    input:
        expand(
            "results/{{dataset}}/models/{{task}}/{{model}}/seed{seed}/predictions.parquet",
            seed=config["train"]["seeds"],
        ),
    output:
        "results/{dataset}/metrics/{task}/{model}.json",
    params:
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/evaluate/{task}/{model}.log",
    script:
        "../scripts/evaluate.py"


rule metrics_table:
    input:
        expand(
            "results/{{dataset}}/metrics/{task}/{model}.json",
            task=config["tasks"],
            model=config["models"],
        ),
    output:
        markdown="results/{dataset}/metrics/summary.md",
        csv="results/{dataset}/metrics/summary.csv",
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/metrics_table.log",
    script:
        "../scripts/metrics_table.py"
