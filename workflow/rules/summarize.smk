"""Task-relevant patient summaries written by the LLM from the retrieved knowledge (sharded), gathered."""


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
        summary={k: config["summaries"][k] for k in ("max_tokens", "max_summary_chars", "max_prompt_chars")},
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
