"""External validation (`evaluate.external`; emerge_ehr.evaluate.external): models developed on dataset {source}
applied unchanged to every labelled stay of dataset {dataset}. Under results/{dataset}/external/{source}/, the
dataset-level stages run again as for a fold, with what they fit taken from the source: normalisation, the
abnormal-value z-scores, then alignment, retrieval, knowledge text, summaries and embeddings of the test data."""

rule external_cohort:
    input:
        "results/{dataset}/cohort.parquet",
    output:
        f"{EXTERNAL_DIR}/cohort.parquet",
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/external/{source}/cohort.log",
    script:
        "../scripts/external_cohort.py"


rule external_timeseries:
    input:
        hourly="results/{dataset}/timeseries.parquet",
        cohort=f"{EXTERNAL_DIR}/cohort.parquet",
        variables=VARIABLES,
        source_stats=lambda w: f"{development_dir(w)}/feature_stats.json",
    output:
        features=f"{EXTERNAL_DIR}/features.npy",
        stats=f"{EXTERNAL_DIR}/feature_stats.json",
    params:
        hours=config["timeseries"]["hours"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/external/{source}/timeseries.log",
    script:
        "../scripts/external_timeseries.py"


use rule abnormal as abnormal_external with:
    input:
        events="results/{dataset}/events.parquet",
        cohort=f"{EXTERNAL_DIR}/cohort.parquet",
        terms=repo_path(config["abnormal"]["terms"]),
        source_events="results/{source}/events.parquet",
        source_cohort=lambda w: f"{development_dir(w)}/cohort.parquet",
    output:
        f"{EXTERNAL_DIR}/abnormal.parquet",
    log:
        "logs/{dataset}/external/{source}/abnormal.log",


use rule align as align_external with:
    output:
        f"{EXTERNAL_DIR}/aligned.parquet",
    log:
        "logs/{dataset}/external/{source}/align.log",


use rule retrieve as retrieve_external with:
    output:
        f"{EXTERNAL_DIR}/context.parquet",
    log:
        "logs/{dataset}/external/{source}/retrieve.log",


use rule summarize as summarize_external with:
    output:
        summaries=f"{EXTERNAL_DIR}/summaries/shard{{shard}}.parquet",
        stats=f"{EXTERNAL_DIR}/summaries/shard{{shard}}.json",
    log:
        "logs/{dataset}/external/{source}/summaries/shard{shard}.log",


use rule summaries as summaries_external with:
    output:
        f"{EXTERNAL_DIR}/summaries.parquet",
    log:
        "logs/{dataset}/external/{source}/summaries.log",


use rule knowledge_text as knowledge_text_external with:
    output:
        f"{EXTERNAL_DIR}/knowledge.parquet",
    log:
        "logs/{dataset}/external/{source}/knowledge.log",


use rule embed as embed_external with:
    output:
        f"{EXTERNAL_DIR}/embeddings/{{task}}.npz",
    log:
        "logs/{dataset}/external/{source}/embed/{task}.log",


rule external_predict:
    input:
        unpack(external_predict_inputs),
    output:
        predictions=f"{EXTERNAL_DIR}/models/{{task}}/{{model}}/seed{{seed}}/predictions.parquet",
        summary=f"{EXTERNAL_DIR}/models/{{task}}/{{model}}/seed{{seed}}/summary.json",
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/external/{source}/predict/{task}/{model}/seed{seed}.log",
    script:
        "../scripts/external_predict.py"


use rule evaluate as evaluate_external with:
    input:
        predictions=lambda w: external_runs(w, w.model),
        reference=external_reference,
    output:
        f"{EXTERNAL_DIR}/metrics/{{task}}/{{model}}.json",
    params:
        resamples=config["evaluate"]["bootstrap_resamples"],
        level=config["evaluate"]["confidence_level"],
        seed=config["evaluate"]["seed"],
        reference=lambda w: REFERENCE if external_reference(w) else None,
        runs=lambda w: external_runs(w, w.model),
        reference_runs=external_reference,
    log:
        "logs/{dataset}/external/{source}/evaluate/{task}/{model}.log",


rule external_table:
    input:
        external=expand(f"{EXTERNAL_DIR}/metrics/{{task}}/{{model}}.json", task=config["tasks"],
                        model=EXTERNAL_MODELS, allow_missing=True),
        internal=expand("results/{{dataset}}/metrics/{task}/{model}.json", task=config["tasks"],
                        model=EXTERNAL_MODELS),
        development=expand("results/{{source}}/metrics/{task}/{model}.json", task=config["tasks"],
                           model=EXTERNAL_MODELS),
        stats=f"{EXTERNAL_DIR}/feature_stats.json",
    output:
        markdown=report(
            "results/{dataset}/metrics/external/{source}.md",
            caption="../report/external.rst",
            category="{dataset}",
            subcategory="comparison",
        ),
        csv="results/{dataset}/metrics/external/{source}.csv",
    params:
        tasks=config["tasks"],
        models=EXTERNAL_MODELS,
        level=config["evaluate"]["confidence_level"],
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/external/{source}/table.log",
    script:
        "../scripts/external_table.py"
