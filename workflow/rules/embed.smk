"""Note-chunk, LLM-summary, knowledge-text and node embeddings per stay and task, the text tokens of the fusion
model. The note chunks, most of the work, are embedded first in `embed.shards` parallel jobs, into the cache."""


rule embed_notes:
    input:
        notes="results/{dataset}/notes.parquet",
    output:
        "results/{dataset}/embeddings/notes/shard{shard}.json",
    params:
        tasks=config["tasks"],
        encoder=encoder_settings(),
        chunk_words=config["embed"]["chunk_words"],
        max_chunks=config["embed"]["max_chunks"],
        shards=config["embed"]["shards"],
        cache_dir=config["cache_dir"],
    wildcard_constraints:
        shard=r"\d+",
    threads: 2
    conda:
        "../../envs/text.yaml"
    log:
        "logs/{dataset}/embed/notes-shard{shard}.log",
    script:
        "../scripts/embed_notes.py"


rule embed:
    input:
        unpack(summary_inputs),  # only the summary methods configured: summaries.method
        notes="results/{dataset}/notes.parquet",
        note_shards=lambda w: [f"results/{w.dataset}/embeddings/notes/shard{i}.json" for i in shards("embed")],
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
