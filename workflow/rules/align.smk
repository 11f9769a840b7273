"""Entities and abnormal features aligned to knowledge-graph nodes by curated terms and embedding search."""


rule align:
    input:
        entities="results/{dataset}/entities.parquet",
        abnormal=lambda w: f"{data_dir(w)}/abnormal.parquet",
        nodes=f"{KG_DIR}/nodes.parquet",
        index=f"{INDEX_DIR}/index.faiss",
        entries=f"{INDEX_DIR}/entries.parquet",
        info=f"{INDEX_DIR}/index.json",
    output:
        "results/{dataset}/aligned.parquet",
    params:
        encoder=encoder_settings(),
        align=config["align"],
        cache_dir=config["cache_dir"],
    threads: 2
    conda:
        "../../envs/text.yaml"
    log:
        "logs/{dataset}/align.log",
    script:
        "../scripts/align.py"
