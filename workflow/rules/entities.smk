"""Disease and phenotype entities of the notes: a lexicon matcher and an LLM (sharded), gathered."""


rule lexicon_entities:
    input:
        notes="results/{dataset}/notes.parquet",
        nodes=f"{KG_DIR}/nodes.parquet",
        abbreviations=repo_path(config["entities"]["abbreviations"]),
    output:
        "results/{dataset}/entities/lexicon.parquet",
    params:
        node_types=config["entities"]["node_types"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/entities/lexicon.log",
    script:
        "../scripts/lexicon_entities.py"


rule llm_entities:
    input:
        notes="results/{dataset}/notes.parquet",
        abbreviations=repo_path(config["entities"]["abbreviations"]),
        model=llm_model_inputs(),
    output:
        entities="results/{dataset}/entities/llm/shard{shard}.parquet",
        stats="results/{dataset}/entities/llm/shard{shard}.json",
    params:
        shards=config["llm_entities"]["shards"],
        llm=llm_settings(),
        extraction=as_params(ExtractionSettings.from_config(config)),
        cache_dir=config["cache_dir"],
    wildcard_constraints:
        shard=r"\d+",
    threads: 2
    resources:
        gpu=LLM["gpus"],
    conda:
        "../../envs/llm.yaml"
    log:
        "logs/{dataset}/entities/llm-shard{shard}.log",
    script:
        "../scripts/llm_entities.py"


rule entities:
    input:
        entity_inputs,
    output:
        "results/{dataset}/entities.parquet",
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/entities.log",
    script:
        "../scripts/gather_entities.py"


rule entity_quality:
    input:
        entities="results/{dataset}/entities.parquet",
        truth="resources/synthetic/{dataset}/ground_truth.parquet",
        cohort="results/{dataset}/cohort.parquet",
        abbreviations=repo_path(config["entities"]["abbreviations"]),
    output:
        json="results/{dataset}/entity_quality.json",
        markdown="results/{dataset}/entity_quality.md",
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/entity_quality.log",
    script:
        "../scripts/entity_quality.py"
