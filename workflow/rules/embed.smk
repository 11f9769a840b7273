"""Note-chunk, LLM-summary, knowledge-text and node embeddings per stay and task, the text tokens of the fusion
model."""


rule embed:
    input:
        unpack(summary_inputs),  # only the summary methods configured: summaries.method
        notes="results/{dataset}/notes.parquet",
        context=lambda w: f"{data_dir(w)}/context.parquet",  # the retrieved nodes (with folds, the fold's)
        cohort="results/{dataset}/cohort.parquet",
    output:
        "results/{dataset}/embeddings/{task}.npz",
    params:
        encoder=encoder_settings(),
        chunk_words=config["embed"]["chunk_words"],
        max_chunks=config["embed"]["max_chunks"],
        max_nodes=config["retrieve"]["max_nodes"],
        cache_dir=config["cache_dir"],
        arrays=EMBEDDING_ARRAYS,
    threads: 2
    conda:
        "../../envs/text.yaml"
    log:
        "logs/{dataset}/embed/{task}.log",
    script:
        "../scripts/embed.py"
