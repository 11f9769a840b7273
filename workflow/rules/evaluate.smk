"""Test-set metrics with bootstrap confidence intervals, and the comparison table.

A skipped model (its train job's summary.json, beside the predictions, gives the reason) gets that reason instead
of metrics, and the tables show it; the plots leave it out.
"""


rule evaluate:
    input:
        predictions=lambda w: predictions(w.dataset, w.task, w.model),
        reference=reference_predictions,
    output:
        "results/{dataset}/metrics/{task}/{model}.json",
    params:
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
        reference=lambda w: REFERENCE if reference_predictions(w) else None,
        runs=lambda w: prediction_runs(w.dataset, w.task, w.model),
        reference_runs=reference_runs,
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
        markdown=report(
            "results/{dataset}/metrics/summary.md",
            caption="../report/metrics.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
        csv="results/{dataset}/metrics/summary.csv",
        paper_markdown=report(
            "results/{dataset}/metrics/paper_table.md",
            caption="../report/paper_table.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
        paper_csv="results/{dataset}/metrics/paper_table.csv",
    params:
        models=config["models"],
        tasks=config["tasks"],
        reference=REFERENCE,
        level=config["evaluate"]["confidence_level"],
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/metrics_table.log",
    script:
        "../scripts/metrics_table.py"


rule plots:
    input:
        lambda w: [path for model in config["models"] for path in predictions(w.dataset, w.task, model)],
    output:
        roc=report(
            "results/{dataset}/plots/{task}/roc.png",
            caption="../report/roc.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
        pr=report(
            "results/{dataset}/plots/{task}/precision_recall.png",
            caption="../report/precision_recall.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
        calibration=report(
            "results/{dataset}/plots/{task}/calibration.png",
            caption="../report/calibration.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
    params:
        runs=lambda w: {model: prediction_runs(w.dataset, w.task, model) for model in config["models"]},
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/plots/{task}.log",
    script:
        "../scripts/plots.py"


rule ablations:
    """The paper's ablation claims that this run's models answer (emerge_ehr.evaluate.ablations): paired
    differences with their intervals and the smallest effect the run resolves."""
    input:
        ablation_inputs,
    output:
        report(
            "results/{dataset}/metrics/ablations.md",
            caption="../report/ablations.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
    params:
        tasks=config["tasks"],
        models=config["models"],
        folds=FOLDS,
        seeds=config["train"]["seeds"],
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
        scarcity={model: config["scarcity"]["percents"] for model in config["scarcity"]["models"]},
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/ablations.log",
    script:
        "../scripts/ablations.py"


rule subgroups:
    """Each model's metrics by sex, age band, race and insurance (emerge_ehr.evaluate.subgroups)."""
    input:
        cohort="results/{dataset}/cohort.parquet",
        predictions=lambda w: [path for model in config["models"] for path in predictions(w.dataset, w.task, model)],
    output:
        csv="results/{dataset}/metrics/subgroups/{task}.csv",
        markdown=report(
            "results/{dataset}/metrics/subgroups/{task}.md",
            caption="../report/subgroups.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
        plot=report(
            "results/{dataset}/plots/{task}/subgroups.png",
            caption="../report/subgroups_plot.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
    params:
        runs=lambda w: {model: prediction_runs(w.dataset, w.task, model) for model in config["models"]},
        plotted=list(dict.fromkeys(([REFERENCE] if REFERENCE in config["models"] else []) + EXPLAINED)),
        settings=config["evaluate"]["subgroups"],
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
        folds=FOLDS,
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/subgroups/{task}.log",
    script:
        "../scripts/subgroups.py"


rule decision_curves:
    """Net benefit of acting on each model's risk, against treating all and none (emerge_ehr.evaluate.decision)."""
    input:
        lambda w: [path for model in config["models"] for path in predictions(w.dataset, w.task, model)],
    output:
        csv="results/{dataset}/metrics/decision_curves/{task}.csv",
        plot=report(
            "results/{dataset}/plots/{task}/decision_curve.png",
            caption="../report/decision_curve.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
    params:
        runs=lambda w: {model: prediction_runs(w.dataset, w.task, model) for model in config["models"]},
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/decision_curves/{task}.log",
    script:
        "../scripts/decision_curves.py"


rule model_card:
    """What TRIPOD+AI asks a report to state, from this run's outputs (emerge_ehr.evaluate.model_card)."""
    input:
        cohort_meta="results/{dataset}/cohort.json",
        cohort="results/{dataset}/cohort.parquet",
        hourly=lambda w: f"{fold_dirs(w.dataset)[0]}/timeseries.parquet",
        metrics=expand("results/{{dataset}}/metrics/{task}/{model}.json", task=config["tasks"], model=config["models"]),
        subgroups=expand("results/{{dataset}}/metrics/subgroups/{task}.csv", task=config["tasks"]),
        decisions=expand("results/{{dataset}}/metrics/decision_curves/{task}.csv", task=config["tasks"]),
        external=lambda w: [f"results/{w.dataset}/metrics/external/{train}.md" for train, test in EXTERNAL_PAIRS
                            if test == w.dataset],
    output:
        report(
            "results/{dataset}/model_card.md",
            caption="../report/model_card.rst",
            category="{dataset}",
            subcategory="model card",
        ),
    params:
        settings=lambda w: {
            "kind": dataset_config(w.dataset)["kind"],
            "tasks": config["tasks"],
            "models": config["models"],
            "folds": FOLDS,
            "seeds": config["train"]["seeds"],
            "hours": config["timeseries"]["hours"],
            "readmission_window_days": config["cohort"]["readmission"]["window_days"],
            "level": config["evaluate"]["confidence_level"],
            "evaluated_on": evaluated_on(FOLDS),
        },
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/model_card.log",
    script:
        "../scripts/model_card.py"
