"""Cross-validation (`evaluate.folds` > 1): each fold's cohort, and the stages that fit on its training part.

Fold k's cohort marks fold k's patients `test`. The stages below are the dataset-level rules run again with that
cohort (their inputs come from `data_dir`), writing under results/{dataset}/folds/fold{k}/: features
normalised, abnormal values z-scored, knowledge retrieved and summarised, models trained on the fold's training
part only. The LLM answer and embedding caches make a prompt or a string that a fold shares with another
cost nothing the second time.
"""


rule fold_cohort:
    input:
        "results/{dataset}/cohort.parquet",
    output:
        f"{FOLD_DIR}/cohort.parquet",
    params:
        folds=FOLDS,
        val_share=lambda w: config["cohort"]["split"]["fractions"][1] / sum(config["cohort"]["split"]["fractions"][:2]),
        seed=config["cohort"]["split"]["seed"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/folds/fold{fold}/cohort.log",
    script:
        "../scripts/fold_cohort.py"


use rule timeseries as timeseries_fold with:
    output:
        hourly=f"{FOLD_DIR}/timeseries.parquet",
        features=f"{FOLD_DIR}/features.npy",
        stats=f"{FOLD_DIR}/feature_stats.json",
    log:
        "logs/{dataset}/folds/fold{fold}/timeseries.log",


use rule abnormal as abnormal_fold with:
    output:
        f"{FOLD_DIR}/abnormal.parquet",
    log:
        "logs/{dataset}/folds/fold{fold}/abnormal.log",


use rule align as align_fold with:
    output:
        f"{FOLD_DIR}/aligned.parquet",
    log:
        "logs/{dataset}/folds/fold{fold}/align.log",


use rule retrieve as retrieve_fold with:
    output:
        f"{FOLD_DIR}/context.parquet",
    log:
        "logs/{dataset}/folds/fold{fold}/retrieve.log",


use rule summarize as summarize_fold with:
    output:
        summaries=f"{FOLD_DIR}/summaries/shard{{shard}}.parquet",
        stats=f"{FOLD_DIR}/summaries/shard{{shard}}.json",
    log:
        "logs/{dataset}/folds/fold{fold}/summaries/shard{shard}.log",


use rule summaries as summaries_fold with:
    output:
        f"{FOLD_DIR}/summaries.parquet",
    log:
        "logs/{dataset}/folds/fold{fold}/summaries.log",


use rule knowledge_text as knowledge_text_fold with:
    output:
        f"{FOLD_DIR}/knowledge.parquet",
    log:
        "logs/{dataset}/folds/fold{fold}/knowledge.log",


use rule embed as embed_fold with:
    output:
        f"{FOLD_DIR}/embeddings/{{task}}.npz",
    log:
        "logs/{dataset}/folds/fold{fold}/embed/{task}.log",


use rule train as train_fold with:
    output:
        model=f"{FOLD_DIR}/models/{{task}}/{{model}}/seed{{seed}}/model.pt",
        history=f"{FOLD_DIR}/models/{{task}}/{{model}}/seed{{seed}}/history.csv",
        predictions=f"{FOLD_DIR}/models/{{task}}/{{model}}/seed{{seed}}/predictions.parquet",
        summary=f"{FOLD_DIR}/models/{{task}}/{{model}}/seed{{seed}}/summary.json",
    log:
        "logs/{dataset}/folds/fold{fold}/train/{task}/{model}/seed{seed}.log",


use rule train_scarce as train_scarce_fold with:
    output:
        model=f"{FOLD_DIR}/scarcity/{{task}}/{{model}}/percent{{percent}}/seed{{seed}}/model.pt",
        history=f"{FOLD_DIR}/scarcity/{{task}}/{{model}}/percent{{percent}}/seed{{seed}}/history.csv",
        predictions=f"{FOLD_DIR}/scarcity/{{task}}/{{model}}/percent{{percent}}/seed{{seed}}/predictions.parquet",
        summary=f"{FOLD_DIR}/scarcity/{{task}}/{{model}}/percent{{percent}}/seed{{seed}}/summary.json",
    log:
        "logs/{dataset}/folds/fold{fold}/train_scarce/{task}/{model}/percent{percent}/seed{seed}.log",


use rule oracle as oracle_fold with:
    output:
        predictions=f"{FOLD_DIR}/models/{{task}}/oracle/seed{{seed}}/predictions.parquet",
        summary=f"{FOLD_DIR}/models/{{task}}/oracle/seed{{seed}}/summary.json",
    log:
        "logs/{dataset}/folds/fold{fold}/train/{task}/oracle/seed{seed}.log",


ruleorder: oracle_fold > train_fold
