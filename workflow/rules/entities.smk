"""Disease and phenotype entities of the notes (lexicon matcher with negation and family history)."""


rule entities:
    input:
        notes="results/{dataset}/notes.parquet",
        nodes=f"{KG_DIR}/nodes.parquet",
        abbreviations=repo_path(config["entities"]["abbreviations"]),
    output:
        "results/{dataset}/entities.parquet",
    params:
        node_types=config["entities"]["node_types"],
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/entities.log",
    script:
        "../scripts/entities.py"
