"""Input functions and helpers shared by the stage rules."""

from dataclasses import asdict
from types import SimpleNamespace

from emerge_ehr.data.cohort import CohortSettings
from emerge_ehr.data.tables import TABLES, source_files
from emerge_ehr.evaluate.report import evaluated_on
from emerge_ehr.meds.export import SPLITS as MEDS_SPLIT_NAMES
from emerge_ehr.llm.backends import LLMSettings
from emerge_ehr.llm.extract import ExtractionSettings
from emerge_ehr.llm.summarize import SummarySettings
from emerge_ehr.model.train_settings import TrainSettings
from emerge_ehr.model.variants import NEURAL_MODELS, summary_method, text_kinds
from emerge_ehr.text.encoder import EncoderSettings
from emerge_ehr.text.embed import EMBEDDING_ARRAYS

SOURCE_TABLES = tuple(TABLES)
NEVER = "(?!x)x"  # a wildcard constraint that matches nothing


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    table="|".join(SOURCE_TABLES),
    task="mortality|readmission",
    seed=r"\d+",
    source="|".join(config["datasets"]),
    percent=r"\d+",
    fold=r"\d+",


def repo_path(path):
    """A setting's path: as given when it exists from the working directory, else inside the repository."""
    return path if Path(path).is_absolute() or Path(path).exists() else str(REPO / path)


VARIABLES = repo_path(config["variables"])
KG = config["knowledge_graph"]
KG_DIR = f"resources/kg/{KG['name']}"
INDEX_DIR = f"{KG_DIR}/{config['text_encoder']['name']}"
KG_DOWNLOAD_DIR = f"{KG_DIR}/download"


def dataset_config(name):
    return config["datasets"][name]


def dataset_layout(name):
    entry = dataset_config(name)
    return entry["layout"] if entry["kind"] == "synthetic" else entry["kind"]


def synthetic_root(name):
    return f"resources/synthetic/{name}"


def dataset_root(name):
    entry = dataset_config(name)
    return synthetic_root(name) if entry["kind"] == "synthetic" else entry["root"]


def synthetic_names(layout):
    names = [n for n, e in config["datasets"].items() if e["kind"] == "synthetic" and e["layout"] == layout]
    return "|".join(names) if names else NEVER


def synthetic_files(layout):
    """Every table the generator writes for a layout, relative to its root."""
    return [f"{stem}.csv.gz" for specs in TABLES.values() for stem in specs[layout].files]


def source_inputs(wildcards):
    """The source files of a table: the generator's outputs, or the existing files of a real dataset."""
    name, layout = wildcards.dataset, dataset_layout(wildcards.dataset)
    if dataset_config(name)["kind"] == "synthetic":
        stems = TABLES[wildcards.table][layout].files
        return [f"{synthetic_root(name)}/{stem}.csv.gz" for stem in stems]
    if layout == "meds":
        from emerge_ehr.meds.reader import data_files

        return [str(p) for p in data_files(dataset_root(name))] + [meds_input_settings(name)["variables"]]
    return [str(p) for p in source_files(dataset_root(name), layout, wildcards.table, notes_root(name))]


def meds_input_settings(name):
    """A `kind: meds` dataset's variable map and note codes (emerge_ehr.meds.reader); None for other kinds."""
    entry = dataset_config(name)
    if entry["kind"] != "meds":
        return None
    return {"variables": repo_path(entry["variables"]), "note_codes": list(entry["note_codes"])}


def meds_labels(name):
    """A `kind: meds` dataset's given labels: task -> MEDS label file or folder (ACES's output); {} if none."""
    entry = dataset_config(name)
    return {task: repo_path(path) for task, path in entry.get("labels", {}).items()} if entry["kind"] == "meds" else {}


def notes_root(name):
    return dataset_config(name).get("notes_root")


def parquet(table):
    return f"results/{{dataset}}/parquet/{table}.parquet"


def as_params(settings):
    """A settings object as a job's params: a plain dict (lists, not tuples), so that Snakemake compares values."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(settings).items()}


def cohort_settings():
    return as_params(CohortSettings.from_config(config))


def train_settings(wildcards):
    return as_params(TrainSettings.from_config(config, model=wildcards.model, seed=int(wildcards.seed)))


def scarce_train_settings(wildcards):
    return train_settings(wildcards) | {"train_fraction": int(wildcards.percent) / 100}


FOLDS = config["evaluate"]["folds"]
FOLD_DIR = "results/{dataset}/folds/fold{fold}"


def data_dir(wildcards):
    """Where a job's fitted inputs live: the dataset's results, or with folds the fold's own (its cohort's
    split decides what normalisation, z-scores and training see)."""
    base = f"results/{wildcards.dataset}"
    if hasattr(wildcards, "source"):  # external validation: fitted on the source dataset, applied to this one
        return f"{base}/external/{wildcards.source}"
    return f"{base}/folds/fold{wildcards.fold}" if hasattr(wildcards, "fold") else base


def seed_runs(base, seeds=None):
    """One run per training seed under ``base`` (a path below the dataset or fold directory): its predictions
    file, or with folds one file per fold, whose test rows are pooled out of fold."""
    seeds = config["train"]["seeds"] if seeds is None else seeds
    if FOLDS == 1:
        return [f"{base.format(prefix='')}/seed{seed}/predictions.parquet" for seed in seeds]
    return [[f"{base.format(prefix=f'folds/fold{fold}/')}/seed{seed}/predictions.parquet" for fold in range(FOLDS)]
            for seed in seeds]


def flat(runs):
    return [path for run in runs for path in ([run] if isinstance(run, str) else run)]


def prediction_runs(dataset, task, model):
    return seed_runs(f"results/{dataset}/{{prefix}}models/{task}/{model}")


def predictions(dataset, task, model):
    """The prediction files of one model: one per training seed (and fold)."""
    return flat(prediction_runs(dataset, task, model))


REFERENCE = config["evaluate"]["reference_model"]
if "oracle" in config["models"] and (REFERENCE is None or any(
        entry["kind"] != "synthetic" for entry in config["datasets"].values())):
    raise ValueError("models: 'oracle' needs synthetic datasets only (their ground truth) and an"
                     " evaluate.reference_model whose predictions it adds the planted effects to")
if "oracle" in config["scarcity"]["models"]:
    raise ValueError("scarcity.models: 'oracle' is not trained, so it has no runs on shares of the training split")


def reference_runs(wildcards):
    """The reference model's runs, for a paired comparison; none for the reference itself."""
    if REFERENCE is None or wildcards.model == REFERENCE:
        return []
    return prediction_runs(wildcards.dataset, wildcards.task, REFERENCE)


def reference_predictions(wildcards):
    return flat(reference_runs(wildcards))


def scarcity_runs(wildcards):
    """model -> percent -> runs; 100 % is the main training run, not trained twice."""
    runs = {}
    for model in config["scarcity"]["models"]:
        runs[model] = {
            percent: prediction_runs(wildcards.dataset, wildcards.task, model) if percent == 100 else seed_runs(
                f"results/{wildcards.dataset}/{{prefix}}scarcity/{wildcards.task}/{model}/percent{percent}")
            for percent in config["scarcity"]["percents"]
        }
    return runs


def ablation_inputs(wildcards):
    """Every model's predictions for every task, and the scarcity runs: what the ablation claims compare."""
    paths = [path for task in config["tasks"] for model in config["models"]
             for path in predictions(wildcards.dataset, task, model)]
    for task in config["tasks"]:
        runs = scarcity_runs(SimpleNamespace(dataset=wildcards.dataset, task=task))
        paths += [path for percents in runs.values() for seeds in percents.values() for path in flat(seeds)]
    return paths


def package_versions(*names):
    """Installed versions of the packages a public resource is built from: part of its params, so that an
    upgrade rebuilds it and never reuses a between-workflow cache entry built with another version."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def kg_source_root():
    """Where the PrimeKG files are read from: the configured folder, or the download rule's output."""
    return KG_DOWNLOAD_DIR if KG["download"]["enabled"] else KG.get("root")


def kg_inputs():
    if KG["kind"] != "primekg":
        return []
    return [f"{kg_source_root()}/kg.csv", f"{kg_source_root()}/disease_features.csv"]


def encoder_settings():
    return as_params(EncoderSettings.from_config(config))


LLM = config["llm"]


def llm_settings():
    return as_params(LLMSettings.from_config(config))


def llm_model_inputs():
    """The model directory, when the workflow builds it: a packaged model converted into resources/models/."""
    builds = LLM["backend"] != "openai" and LLM["model"].startswith("resources/models/") and LLM.get("package")
    return [LLM["model"]] if builds else []


def shards(stage):
    return range(config[stage]["shards"])


def entity_inputs(wildcards):
    paths = []
    if "lexicon" in config["entities"]["methods"]:
        paths.append(f"results/{wildcards.dataset}/entities/lexicon.parquet")
    if "llm" in config["entities"]["methods"]:
        paths += [f"results/{wildcards.dataset}/entities/llm/shard{i}.parquet" for i in shards("llm_entities")]
    return paths


SUMMARY_METHODS = config["summaries"]["method"]
# The summary method each text model reads, besides notes, and the models that read embeddings/{task}.npz (the
# *_nodes ones read the retrieved nodes, context.parquet, always built, whatever summaries.method says).
MODEL_SUMMARY_METHOD = {name: method for name in NEURAL_MODELS if (method := summary_method(name))}
TEXT_MODELS = tuple(name for name in NEURAL_MODELS if text_kinds(name))


def check_summary_methods():
    """A model reading summaries of a method that is not configured would only ever be skipped: say so now."""
    models = {*config["models"], *config["scarcity"]["models"], REFERENCE}
    unmet = sorted(m for m in models if m in MODEL_SUMMARY_METHOD and MODEL_SUMMARY_METHOD[m] not in SUMMARY_METHODS)
    if unmet:
        needed = sorted({MODEL_SUMMARY_METHOD[m] for m in unmet})
        raise ValueError(f"models {unmet} read summaries of method {needed}, which summaries.method {SUMMARY_METHODS}"
                         " leaves out: add it there or remove the models (models, scarcity.models, reference_model)")


check_summary_methods()


SUMMARY_FILES = {"llm": "summaries.parquet", "knowledge": "knowledge.parquet"}


def summary_inputs(wildcards):
    """The texts of each configured summary method (the LLM summaries, the knowledge texts), named by file."""
    return {Path(SUMMARY_FILES[m]).stem: f"{data_dir(wildcards)}/{SUMMARY_FILES[m]}" for m in SUMMARY_METHODS}


def train_inputs(wildcards):
    inputs = {
        "features": f"{data_dir(wildcards)}/features.npy",
        "cohort": f"{data_dir(wildcards)}/cohort.parquet",
    }
    if wildcards.model in TEXT_MODELS:
        inputs["embeddings"] = f"{data_dir(wildcards)}/embeddings/{wildcards.task}.npz"
    return inputs


# External validation: (development dataset, test dataset) pairs, and the models they apply (the oracle is not a
# model: it adds the test data's own planted effects)
EXTERNAL_PAIRS = [(pair["train"], pair["test"]) for pair in config["evaluate"]["external"]]
for _train, _test in EXTERNAL_PAIRS:
    if _train not in config["datasets"] or _test not in config["datasets"] or _train == _test:
        raise ValueError(f"evaluate.external: {{train: {_train}, test: {_test}}} needs two different datasets of "
                         f"`datasets` ({', '.join(config['datasets'])})")
EXTERNAL_MODELS = [name for name in config["models"] if name != "oracle"]


# External validation (external.smk): the test dataset's directory for the models of {source}
EXTERNAL_DIR = "results/{dataset}/external/{source}"


def development_dir(wildcards):
    """Where the models developed on the source dataset live: with folds, its first fold's directory."""
    return fold_dirs(wildcards.source)[0]


def external_runs(wildcards, model):
    return [f"{EXTERNAL_DIR}/models/{wildcards.task}/{model}/seed{seed}/predictions.parquet".format(
        dataset=wildcards.dataset, source=wildcards.source) for seed in config["train"]["seeds"]]


def external_reference(wildcards):
    compared = REFERENCE in EXTERNAL_MODELS and wildcards.model != REFERENCE
    return external_runs(wildcards, REFERENCE) if compared else []


def external_predict_inputs(wildcards):
    run = f"{development_dir(wildcards)}/models/{wildcards.task}/{wildcards.model}/seed{wildcards.seed}"
    base = data_dir(wildcards)
    inputs = {"model": f"{run}/model.pt", "summary": f"{run}/summary.json", "features": f"{base}/features.npy",
              "cohort": f"{base}/cohort.parquet"}
    if wildcards.model in TEXT_MODELS:
        inputs["embeddings"] = f"{base}/embeddings/{wildcards.task}.npz"
    return inputs


# The models explained stay by stay: those of `explain.models` that this run trains (neural models only)
EXPLAINED = [name for name in config["explain"]["models"] if name in config["models"] and name in NEURAL_MODELS]


def fold_dirs(dataset):
    """Where each model that tests stays lives: every fold's directory, or the dataset's."""
    base = f"results/{dataset}"
    return [f"{base}/folds/fold{fold}" for fold in range(FOLDS)] if FOLDS > 1 else [base]


def explain_parts(wildcards):
    """The first training seed's model of each fold (or the one model), with the inputs it was trained on."""
    seed = config["train"]["seeds"][0]
    parts = []
    for base in fold_dirs(wildcards.dataset):
        run = f"{base}/models/{wildcards.task}/{wildcards.model}/seed{seed}"
        part = {"model": f"{run}/model.pt", "summary": f"{run}/summary.json", "features": f"{base}/features.npy",
                "feature_stats": f"{base}/feature_stats.json", "cohort": f"{base}/cohort.parquet"}
        if wildcards.model in TEXT_MODELS:
            part["embeddings"] = f"{base}/embeddings/{wildcards.task}.npz"
        parts.append(part)
    return parts


def explain_contexts(wildcards):
    return [f"{base}/context.parquet" for base in fold_dirs(wildcards.dataset)]


MEDS_SPLITS = list(MEDS_SPLIT_NAMES.values())


def meds_export_enabled(name):
    """`meds.export`: `auto` exports the real datasets (MIMIC-III, MIMIC-IV) only."""
    setting = config["meds"]["export"]
    return setting == "always" or (setting == "auto" and dataset_config(name)["kind"] != "synthetic")


def meds_run(wildcards):
    """One seed's run of a model: its predictions file, or with folds one file per fold (pooled out of fold)."""
    base = f"results/{wildcards.dataset}/{{prefix}}models/{wildcards.task}/{wildcards.model}"
    return seed_runs(base, [wildcards.seed])[0]


def meds_targets(name):
    """The MEDS dataset, each task's labels and each model's predictions per seed."""
    root = f"results/{name}/meds"
    return [f"{root}/metadata/dataset.json"] + [f"{root}/labels/{task}.parquet" for task in config["tasks"]] + [
        f"{root}/predictions/{task}/{model}/seed{seed}.parquet"
        for task in config["tasks"] for model in config["models"] for seed in config["train"]["seeds"]]


def manifest_sources(name):
    """The files a dataset is read from (hashed into its manifest): the generator's tables of a synthetic one."""
    if dataset_config(name)["kind"] == "synthetic":
        layout = dataset_layout(name)
        return [f"{synthetic_root(name)}/{stem}" for stem in synthetic_files(layout)]
    if dataset_layout(name) == "meds":
        from emerge_ehr.meds.reader import data_files

        return [str(p) for p in data_files(dataset_root(name))]
    return [str(p) for table in SOURCE_TABLES
            for p in source_files(dataset_root(name), dataset_layout(name), table, notes_root(name))]


def all_targets():
    """Every dataset's outputs, and last its run manifest."""
    return [path for name in config["datasets"] for path in dataset_targets(name) + [f"results/{name}/manifest.json"]]


def dataset_targets(name):
    """What the default target builds for one dataset (its manifest aside)."""
    targets = []
    targets += [
        f"results/{name}/cohort.parquet",
        f"results/{name}/notes.parquet",
        f"results/{name}/metrics/summary.md",
        f"results/{name}/metrics/paper_table.md",
        f"results/{name}/metrics/ablations.md",
    ]
    if FOLDS == 1:  # with folds, each fold retrieves and summarises with its own fitted z-scores
        targets += [f"results/{name}/context.parquet"]
        targets += [f"results/{name}/{SUMMARY_FILES[method]}" for method in SUMMARY_METHODS]
    targets += [f"results/{name}/plots/{task}/roc.png" for task in config["tasks"]]
    targets += [f"results/{name}/metrics/subgroups/{task}.md" for task in config["tasks"]]
    targets += [f"results/{name}/plots/{task}/decision_curve.png" for task in config["tasks"]]
    targets.append(f"results/{name}/model_card.md")
    targets += [f"results/{name}/metrics/external/{train}.md" for train, test in EXTERNAL_PAIRS if test == name]
    if EXPLAINED:
        targets += [f"results/{name}/explanations/{task}.md" for task in config["tasks"]]
    if config["scarcity"]["models"]:
        targets += [f"results/{name}/plots/{task}/scarcity.png" for task in config["tasks"]]
    if dataset_config(name)["kind"] == "synthetic":
        targets.append(f"results/{name}/entity_quality.md")
    if meds_export_enabled(name):
        targets += meds_targets(name)
    return targets
