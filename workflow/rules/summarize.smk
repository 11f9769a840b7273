"""Task-relevant patient summaries from the retrieved knowledge, by the methods of summaries.method: written by
the LLM (sharded, gathered), or the knowledge itself as text (no LLM)."""


rule summarize:
    input:
        context=lambda w: f"{data_dir(w)}/context.parquet",
        model=llm_model_inputs(),
    output:
        summaries="results/{dataset}/summaries/shard{shard}.parquet",
        stats="results/{dataset}/summaries/shard{shard}.json",
    params:
        shards=config["summaries"]["shards"],
        llm=llm_settings(),
        summary=as_params(SummarySettings.from_config(config)),
        cache_dir=config["cache_dir"],
    wildcard_constraints:
        shard=r"\d+",
    threads: 2
    resources:
        gpu=LLM["gpus"],
    conda:
        "../../envs/llm.yaml"
    log:
        "logs/{dataset}/summaries/shard{shard}.log",
    script:
        "../scripts/summarize.py"


rule summaries:
    input:
        lambda w: [f"{data_dir(w)}/summaries/shard{shard}.parquet" for shard in shards("summaries")],
    output:
        "results/{dataset}/summaries.parquet",
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/summaries.log",
    script:
        "../scripts/gather_summaries.py"


rule knowledge_text:
    input:
        context=lambda w: f"{data_dir(w)}/context.parquet",
    output:
        "results/{dataset}/knowledge.parquet",
    params:
        encoder_model=config["text_encoder"]["model"],  # its tokenizer measures the text against what it reads
    conda:
        "../../envs/text.yaml"
    log:
        "logs/{dataset}/knowledge.log",
    script:
        "../scripts/knowledge_text.py"
