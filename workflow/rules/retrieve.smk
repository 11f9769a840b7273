"""Per stay and task: matched nodes, their definitions and descriptions, and relation triples."""


rule retrieve:
    input:
        entities="results/{dataset}/entities.parquet",
        notes="results/{dataset}/notes.parquet",
        abnormal=lambda w: f"{data_dir(w)}/abnormal.parquet",
        aligned=lambda w: f"{data_dir(w)}/aligned.parquet",
        nodes=f"{KG_DIR}/nodes.parquet",
        edges=f"{KG_DIR}/edges.parquet",
        cohort="results/{dataset}/cohort.parquet",
    output:
        "results/{dataset}/context.parquet",
    params:
        tasks=config["tasks"],
        settings=config["retrieve"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/retrieve.log",
    script:
        "../scripts/retrieve.py"
