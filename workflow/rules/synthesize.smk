"""Synthetic MIMIC-format databases for the offline demo and the tests (dataset kind `synthetic`)."""


for _layout in ("mimic4", "mimic3"):

    rule:
        name:
            f"synthesize_{_layout}"
        output:
            [f"resources/synthetic/{{dataset}}/{path}" for path in synthetic_files(_layout)],
            truth="resources/synthetic/{dataset}/ground_truth.parquet",
            manifest="resources/synthetic/{dataset}/synthetic_manifest.json",
        params:
            layout=_layout,
            patients=lambda w: dataset_config(w.dataset)["patients"],
            seed=lambda w: dataset_config(w.dataset)["seed"],
            header_case=lambda w: dataset_config(w.dataset)["header_case"],
            variables=VARIABLES,
        wildcard_constraints:
            dataset=synthetic_names(_layout),
        conda:
            "../../envs/data.yaml"
        log:
            f"logs/{{dataset}}/synthesize_{_layout}.log",
        script:
            "../scripts/synthesize.py"
