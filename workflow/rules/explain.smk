"""Per-stay explanations (emerge_ehr.evaluate.explain) of the models `explain.models` names, and the report's case
studies: the highest-risk test stays and a random sample, with what moved each one's risk."""


rule explain:
    input:
        lambda w: [path for part in explain_parts(w) for path in part.values()],
    output:
        "results/{dataset}/explanations/{task}/{model}.parquet",
    params:
        parts=explain_parts,
        steps=config["explain"]["steps"],
    threads: config["train"]["threads"]
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/explain/{task}/{model}.log",
    script:
        "../scripts/explain.py"


rule explanation_report:
    input:
        explanations=lambda w: [f"results/{w.dataset}/explanations/{w.task}/{model}.parquet" for model in EXPLAINED],
        contexts=explain_contexts,
        notes="results/{dataset}/notes.parquet",
    output:
        markdown=report(
            "results/{dataset}/explanations/{task}.md",
            caption="../report/explanations.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
        plot=report(
            "results/{dataset}/plots/{task}/explanations.png",
            caption="../report/explanations_plot.rst",
            category="{dataset}",
            subcategory="{task}",
        ),
    params:
        models=EXPLAINED,
        settings=config["explain"],
        chunking={"chunk_words": config["embed"]["chunk_words"], "max_chunks": config["embed"]["max_chunks"]},
    conda:
        "../../envs/model.yaml"
    log:
        "logs/{dataset}/explanation_report/{task}.log",
    script:
        "../scripts/explanation_report.py"
