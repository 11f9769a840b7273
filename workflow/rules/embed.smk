"""Note-chunk and summary embeddings per stay and task, the text tokens of the fusion model."""


rule embed:
    input:
        notes="results/{dataset}/notes.parquet",
        summaries=lambda w: f"{data_dir(w)}/summaries.parquet",
        cohort="results/{dataset}/cohort.parquet",
    output:
        "results/{dataset}/embeddings/{task}.npz",
    params:
        encoder=encoder_settings(),
        chunk_words=config["embed"]["chunk_words"],
        max_chunks=config["embed"]["max_chunks"],
        cache_dir=config["cache_dir"],
        arrays=EMBEDDING_ARRAYS,
    threads: 2
    conda:
        "../../envs/text.yaml"
    log:
        "logs/{dataset}/embed/{task}.log",
    script:
        "../scripts/embed.py"
