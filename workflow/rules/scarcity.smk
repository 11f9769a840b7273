"""The data-scarcity experiment: selected models trained on shares of the training split, same test split."""


rule scarcity:
    input:
        lambda w: [path for runs in scarcity_runs(w).values() for seeds in runs.values() for path in flat(seeds)],
    output:
        csv="results/{dataset}/scarcity/{task}.csv",
        plot=report(
            "results/{dataset}/plots/{task}/scarcity.png",
            caption="../report/scarcity.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
    params:
        runs=scarcity_runs,
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/scarcity/{task}.log",
    script:
        "../scripts/scarcity.py"
