"""Source tables (csv.gz) converted once into canonical Parquet; every later stage queries these."""


rule convert:
    input:
        source_inputs,
    output:
        "results/{dataset}/parquet/{table}.parquet",
    params:
        root=lambda w: dataset_root(w.dataset),
        layout=lambda w: dataset_layout(w.dataset),
        notes_root=lambda w: notes_root(w.dataset),
        meds=lambda w: meds_input_settings(w.dataset),
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../../envs/data.yaml"
    log:
        "logs/{dataset}/convert/{table}.log",
    script:
        "../scripts/convert.py"
