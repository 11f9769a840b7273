"""One model, task and seed per job; a text model without text for any training stay is skipped (outputs kept)."""


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{dataset}/models/{task}/{model}/seed{seed}/model.pt",
        history="results/{dataset}/models/{task}/{model}/seed{seed}/history.csv",
        predictions="results/{dataset}/models/{task}/{model}/seed{seed}/predictions.parquet",
        summary="results/{dataset}/models/{task}/{model}/seed{seed}/summary.json",
    params:
        settings=train_settings,
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/train/{task}/{model}/seed{seed}.log",
    script:
        "../scripts/train.py"


use rule train as train_scarce with:
    output:
        model="results/{dataset}/scarcity/{task}/{model}/percent{percent}/seed{seed}/model.pt",
        history="results/{dataset}/scarcity/{task}/{model}/percent{percent}/seed{seed}/history.csv",
        predictions="results/{dataset}/scarcity/{task}/{model}/percent{percent}/seed{seed}/predictions.parquet",
        summary="results/{dataset}/scarcity/{task}/{model}/percent{percent}/seed{seed}/summary.json",
    params:
        settings=scarce_train_settings,
    log:
        "logs/{dataset}/train_scarce/{task}/{model}/percent{percent}/seed{seed}.log",


rule oracle:
    """Synthetic datasets: the reference model's predictions plus the planted note-only effects (see
    emerge_ehr.evaluate.oracle); evaluated like a model, so the tables show what text could add at most."""
    input:
        reference=lambda w: f"{data_dir(w)}/models/{w.task}/{REFERENCE}/seed{w.seed}/predictions.parquet",
        truth=lambda w: f"{synthetic_root(w.dataset)}/ground_truth.parquet",
    output:
        predictions="results/{dataset}/models/{task}/oracle/seed{seed}/predictions.parquet",
        summary="results/{dataset}/models/{task}/oracle/seed{seed}/summary.json",
    params:
        reference=REFERENCE,
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/train/{task}/oracle/seed{seed}.log",
    script:
        "../scripts/oracle.py"


ruleorder: oracle > train
