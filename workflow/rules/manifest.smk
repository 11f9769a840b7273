"""The run manifest: what the dataset's results were made with (emerge_ehr.reproducibility)."""


rule manifest:
    """Written last (after every other output of the dataset): package versions, machine, number formats, model
    and input file fingerprints, the resolved configuration's hash."""
    input:
        lambda w: dataset_targets(w.dataset),
    output:
        "results/{dataset}/manifest.json",
    params:
        config=config,
        sources=lambda w: manifest_sources(w.dataset),
        llm=llm_settings(),
        encoder=encoder_settings(),
    log:
        "logs/{dataset}/manifest.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/manifest.py"
