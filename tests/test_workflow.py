"""Real Snakemake runs of the whole workflow on tiny configs, in a scratch working directory."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest

from emerge_ehr.data.abnormal import ABNORMAL_SCHEMA
from emerge_ehr.data.cohort import COHORT_COLUMNS
from emerge_ehr.data.notes import NOTE_SCHEMA
from emerge_ehr.data.timeseries import EVENT_SCHEMA
from emerge_ehr.kg.align import ALIGNED_SCHEMA
from emerge_ehr.kg.retrieve import CONTEXT_SCHEMA

from cohort_by_hand import mimic3_cohort
from conftest import REPO, copy_run
from workflow_helpers import SNAKEMAKE, load_config, planned_rules, snakemake, targets

pytestmark = pytest.mark.slow


# The tiny MIMIC-IV run also builds the paper-layout table, the ablation claims and the data-scarcity experiment.
TINY_TARGETS = targets("tiny") + ["results/tiny/metrics/paper_table.md", "results/tiny/metrics/ablations.md"] + [
    f"results/tiny/plots/{task}/scarcity.png" for task in ("mortality", "readmission")] + [
    # the reporting a clinical-ML reviewer asks for
    "results/tiny/model_card.md", "results/tiny/explanations/mortality.md"] + [
    f"results/tiny/plots/{task}/decision_curve.png" for task in ("mortality", "readmission")]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    config = load_config("tiny-mimic4.yaml", workdir)
    snakemake(workdir, config, *TINY_TARGETS)
    return workdir, config


def test_every_output_has_its_schema(tiny_run):
    workdir, config = tiny_run
    results = workdir / "results" / "tiny"
    cohort = pl.read_parquet(results / "cohort.parquet")
    assert cohort.columns == COHORT_COLUMNS
    assert cohort.height > 50 and cohort.get_column("stay_id").is_sorted()
    assert set(cohort.get_column("split").unique()) == {"train", "val", "test"}
    assert dict(pl.read_parquet(results / "events.parquet").schema) == EVENT_SCHEMA
    hourly = pl.read_parquet(results / "timeseries.parquet")
    assert hourly.get_column("hour").is_between(0, 47).all() and "heart_rate" in hourly.columns
    features = np.load(results / "features.npy")
    assert features.shape == (cohort.height, 48, 61) and features.dtype == np.float32
    assert np.isfinite(features).all()
    stats = json.loads((results / "feature_stats.json").read_text())
    assert len(stats["feature_names"]) == 61
    notes = pl.read_parquet(results / "notes.parquet")
    assert dict(notes.schema) == NOTE_SCHEMA and notes.height > 0
    assert notes.filter(pl.col("mortality")).get_column("hours_from_intime").max() < 48
    for task in ("mortality", "readmission"):
        for seed in config["train"]["seeds"]:
            predictions = pl.read_parquet(results / f"models/{task}/gru/seed{seed}/predictions.parquet")
            assert set(predictions.columns) == {"stay_id", "split", "label", "probability"}
            assert predictions.get_column("probability").is_between(0, 1).all()
        metrics = json.loads((results / f"metrics/{task}/gru.json").read_text())
        assert metrics["seeds"] == len(config["train"]["seeds"])
        assert 0 < metrics["positives"] < metrics["test_stays"]  # both outcomes: every metric is defined
        for name in ("auroc", "auprc", "min_p_se", "brier"):
            m = metrics["metrics"][name]
            assert m["ci_low"] < m["ci_high"] and m["ci_low"] <= m["value"] <= m["ci_high"], (task, name)
    table = (results / "metrics" / "summary.md").read_text()
    assert "| mortality | gru |" in table and "| readmission | gru |" in table
    assert (workdir / "logs" / "tiny" / "cohort.log").read_text().count("cohort flow") == 6
    kg = workdir / "resources" / "kg" / "fixture"
    assert pl.read_parquet(kg / "nodes.parquet").height == 30
    assert (kg / "minilm" / "index.faiss").exists()
    entities = pl.read_parquet(results / "entities.parquet")
    assert set(entities.get_column("method")) == {"lexicon"} and entities.get_column("negated").any()
    aligned = pl.read_parquet(results / "aligned.parquet")
    assert dict(aligned.schema) == ALIGNED_SCHEMA and aligned.get_column("accepted").any()
    context = pl.read_parquet(results / "context.parquet")
    assert dict(context.schema) == CONTEXT_SCHEMA
    assert context.height == 2 * cohort.height  # one row per task and stay
    assert context.get_column("node_indices").list.len().max() <= 10
    assert context.get_column("triples").str.contains(r"\(heart failure, ").any()
    abnormal = pl.read_parquet(results / "abnormal.parquet")
    assert dict(abnormal.schema) == ABNORMAL_SCHEMA and abnormal.get_column("z").abs().min() > 2


def test_paper_table_compares_with_the_reference_by_paired_bootstrap(tiny_run):
    workdir, config = tiny_run
    results = workdir / "results" / "tiny" / "metrics"
    paper = pl.read_csv(results / "paper_table.csv")
    assert paper.get_column("model").to_list() == config["models"]
    logreg = paper.row(by_predicate=pl.col("model") == "logreg", named=True)
    for task in ("mortality", "readmission"):
        assert logreg[f"{task}_reference"] == "gru"
        low, value, high = (logreg[f"{task}_auprc_difference{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= value <= high
        metrics = json.loads((results / task / "logreg.json").read_text())
        assert metrics["versus_reference"]["metrics"]["auprc"]["difference"] == pytest.approx(value)
        assert "versus_reference" not in json.loads((results / task / "gru.json").read_text())
    markdown = (results / "paper_table.md").read_text()
    assert "mortality AUPRC vs gru" in markdown and "| gru |" in markdown and " ± " in markdown
    # logreg and gru answer none of the paper's model claims; the scarcity points compare logreg with the GRU
    ablations = (results / "ablations.md").read_text()
    assert "| with 20 % of the training labels, logreg beats the GRU | mortality | logreg | gru |" in ablations
    assert "EMERGE" not in ablations and "staged" not in ablations


def test_scarcity_trains_on_nested_shares_and_reuses_the_full_run(tiny_run):
    workdir, config = tiny_run
    results = workdir / "results" / "tiny"
    for task in ("mortality", "readmission"):
        table = pl.read_csv(results / "scarcity" / f"{task}.csv").sort("model", "percent")
        assert table.select("model", "percent").rows() == [("gru", 20), ("gru", 100), ("logreg", 20), ("logreg", 100)]
        for model in ("gru", "logreg"):
            stays = table.filter(pl.col("model") == model).get_column("train_stays").to_list()
            assert 0 < stays[0] < stays[1] * 0.3
            full = json.loads((results / "metrics" / task / f"{model}.json").read_text())["metrics"]["auroc"]["value"]
            assert table.filter(pl.col("model") == model, pl.col("percent") == 100).item(0, "auroc") == pytest.approx(full)
        assert not (results / "scarcity" / task / "gru" / "percent100").exists()
        scarce = sorted((results / "scarcity" / task).glob("*/percent20/seed*/summary.json"))
        assert len(scarce) == 4 and {json.loads(f.read_text())["train_fraction"] for f in scarce} == {0.2}
        assert json.loads((results / "models" / task / "gru" / "seed0" / "summary.json").read_text())["train_fraction"] == 1.0
        assert (results / "plots" / task / "scarcity.png").stat().st_size > 10_000


def test_report_is_self_contained_html_with_plots_and_table(tiny_run):
    workdir, config = tiny_run
    snakemake(workdir, config, *TINY_TARGETS, "--report", str(workdir / "report.html"))
    html = (workdir / "report.html").read_text(errors="ignore")
    assert len(html) > 100_000 and "roc.png" in html and "summary.md" in html
    for section in ("model_card.md", "subgroups/mortality.md", "decision_curve.png", "explanations/mortality.md",
                    "calibration.png"):
        assert section in html, section
    assert (workdir / "results" / "tiny" / "plots" / "mortality" / "calibration.png").stat().st_size > 10_000


def test_logs_carry_no_note_text(tiny_run):
    workdir, _ = tiny_run
    notes = pl.read_parquet(workdir / "results" / "tiny" / "notes.parquet")
    sentences = {s.strip() for text in notes.get_column("text") for s in text.split(".") if len(s.strip()) > 25}
    logs = "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
    assert len(sentences) > 300 and logs
    assert not [s for s in sentences if s in logs]  # every sentence of every note


def test_rerun_with_nothing_changed_does_nothing(tiny_run):
    workdir, config = tiny_run
    result = snakemake(workdir, config, "--dry-run", *targets("tiny"))
    assert planned_rules(result) == set()


def test_changing_a_model_setting_reruns_training_and_evaluation_only(tiny_run):
    workdir, config = tiny_run
    changed = json.loads(json.dumps(config))
    changed.setdefault("model_settings", {})["gru"] = {"hidden_size": 32}
    result = snakemake(workdir, changed, "--dry-run", *TINY_TARGETS)
    assert planned_rules(result) == {"train", "train_scarce", "evaluate", "metrics_table", "plots", "scarcity",
                                     "ablations", "subgroups", "decision_curves", "explain", "explanation_report",
                                     "model_card"}


def test_more_stays_embed_only_new_strings_and_reuse_the_index(tiny_run, tmp_path):
    module_run, config = tiny_run
    # on a copy, so that the module's run stays as it is; the copy keeps the module's knowledge graph fixture and
    # cache folder (two working directories may share one cache_dir)
    workdir = copy_run(module_run, tmp_path / "run")
    bigger = json.loads(json.dumps(config))
    bigger["datasets"]["tiny"]["patients"] = 200
    planned = planned_rules(snakemake(workdir, bigger, "--dry-run", *TINY_TARGETS))
    assert "kg" not in planned and "kg_index" not in planned and "align" in planned
    snakemake(workdir, bigger, "--until", "align")
    log = (workdir / "logs" / "tiny" / "align.log").read_text()
    hits, misses = map(int, re.search(r"embedding cache hits (\d+), misses (\d+)", log).groups())
    aligned = pl.read_parquet(workdir / "results" / "tiny" / "aligned.parquet").height
    assert hits > 0 and hits + misses == aligned and misses < aligned


def test_mimic3_layout_and_hospital_readmission(tmp_path):
    config = load_config("tiny-mimic3.yaml", tmp_path)
    snakemake(tmp_path, config, *targets("tiny3"))
    results = tmp_path / "results" / "tiny3"
    meta = json.loads((results / "cohort.json").read_text())
    assert meta["readmission_definition"] == "hospital" and meta["stays"] > 50
    cohort = pl.read_parquet(results / "cohort.parquet")
    # Under the plain definition, patients who die in hospital are not at risk of readmission.
    assert cohort.filter(pl.col("mortality") == 1).get_column("readmission").is_null().all()
    assert pl.read_parquet(results / "notes.parquet").height > 0
    assert (results / "metrics" / "summary.md").exists()


@pytest.mark.parametrize("layout", ["mimic3", "mimic4"])
def test_column_names_in_either_case_give_the_same_tables_and_cohort(tmp_path, layout):
    """Upper- and lower-case exports of one database convert to the same canonical tables, so every later
    stage sees the same data; for MIMIC-III the cohort is also checked against a second, standard-library
    working of the definition on the raw CSVs."""
    config = load_config("tiny-mimic4.yaml", tmp_path)
    config["datasets"] = {case: {"kind": "synthetic", "layout": layout, "patients": 80, "seed": 5, "header_case": case}
                          for case in ("lower", "upper")}
    snakemake(tmp_path, config, *[f"results/{case}/{name}" for case in config["datasets"]
                                  for name in ("cohort.parquet", "features.npy", "notes.parquet")])
    lower, upper = tmp_path / "results" / "lower", tmp_path / "results" / "upper"
    header = gzip.open(tmp_path / "resources" / "synthetic" / "upper" / ("ICUSTAYS.csv.gz" if layout == "mimic3" else
                                                                         "icu/icustays.csv.gz"), "rt").readline()
    assert header.startswith("ROW_ID,SUBJECT_ID" if layout == "mimic3" else "SUBJECT_ID,HADM_ID,STAY_ID")
    for table in sorted(p.name for p in (lower / "parquet").iterdir()):
        assert pl.read_parquet(lower / "parquet" / table).equals(pl.read_parquet(upper / "parquet" / table)), table
    assert pl.read_parquet(lower / "cohort.parquet").equals(pl.read_parquet(upper / "cohort.parquet"))
    assert np.array_equal(np.load(lower / "features.npy"), np.load(upper / "features.npy"))
    if layout == "mimic3":
        flow, labels = mimic3_cohort(tmp_path / "resources" / "synthetic" / "lower")
        meta = json.loads((lower / "cohort.json").read_text())
        assert [step["stays"] for step in meta["flow"]][:5] == flow
        cohort = pl.read_parquet(lower / "cohort.parquet")
        assert {s: labels[s] for s in cohort.get_column("stay_id")} == {
            row[0]: (row[1], row[2]) for row in cohort.select("stay_id", "mortality", "readmission").iter_rows()}
        assert None in {readmission for _, readmission in labels.values()}  # a death in the ICU is not at risk


def test_mimic4_demo_cohort_and_labels(tmp_path, mimic4_demo):
    """Counts derived by hand from the raw demo tables with a separate standard-library script.

    140 ICU stays; 119 alone in their admission; 110 without a care-unit transfer; all adults; 53 last
    >= 48 h and all have chart data. Of these 53: 8 in-hospital deaths; 16 ICU readmissions or deaths
    within 30 days of ICU discharge, of which 6 are deaths in the ICU (death time before the out-time):
    not at risk of readmission, so 10 positives and 6 null labels. The demo has no notes.
    """
    config = load_config("mimic4-demo.yaml", tmp_path)
    config["datasets"]["mimic4_demo"]["root"] = str(mimic4_demo)
    # a small synthetic cohort in the MIMIC-III layout for external validation: the demo's model on it, unchanged
    config["datasets"] |= {"syn3": {"kind": "synthetic", "layout": "mimic3", "patients": 80, "seed": 5}}
    config["evaluate"]["external"] = [{"train": "mimic4_demo", "test": "syn3"}]
    reporting = [f"results/mimic4_demo/{path}" for path in (
        "model_card.md", "metrics/subgroups/mortality.md", "plots/mortality/decision_curve.png",
        "explanations/mortality.md")]
    external = ["results/syn3/metrics/external/mimic4_demo.md", "results/syn3/model_card.md"]
    snakemake(tmp_path, config, *targets("mimic4_demo"), *reporting, *external)
    results = tmp_path / "results" / "mimic4_demo"
    meta = json.loads((results / "cohort.json").read_text())
    assert [step["stays"] for step in meta["flow"]] == [140, 119, 110, 110, 53, 53]
    assert meta["positives"] == {"mortality": 8, "readmission": 10}
    assert meta["not_at_risk"] == {"mortality": 0, "readmission": 6}
    assert meta["patients"] == 47
    assert pl.read_parquet(results / "notes.parquet").height == 0
    # No notes: no entities, yet abnormal features still reach the context.
    assert pl.read_parquet(results / "entities.parquet").height == 0
    context = pl.read_parquet(results / "context.parquet")
    assert context.get_column("abnormal_features").list.len().sum() > 0
    assert np.load(results / "features.npy").shape == (53, 48, 61)
    assert (results / "metrics" / "summary.md").exists()
    # the reviewer's reporting on real data: race and insurance reach the subgroups, the card names the flow
    subgroups = pl.read_csv(results / "metrics" / "subgroups" / "mortality.csv")
    assert {"White", "Black"} <= set(subgroups.filter(pl.col("attribute") == "race").get_column("group"))
    assert set(subgroups.get_column("status").str.slice(0, 9)) <= {"ok", "too small", "one outco"}
    card = (results / "model_card.md").read_text()
    assert "| ICU stay >= 48 h | 53 | 57 |" in card and "## Subgroups" in card and "## External" not in card
    explained = pl.read_parquet(results / "explanations" / "mortality" / "gru.parquet")
    assert set(explained.get_column("method")) == {"integrated_gradients"} and explained.height > 0
    # external validation: the demo's model and a synthetic seed's, unchanged on a MIMIC-III-layout synthetic cohort
    syn3 = tmp_path / "results" / "syn3"
    table = (syn3 / "metrics" / "external" / "mimic4_demo.md").read_text()
    assert "developed on mimic4_demo, tested on syn3" in table and "| mortality | gru |" in table
    stats = json.loads((syn3 / "external" / "mimic4_demo" / "feature_stats.json").read_text())
    assert stats["numeric"] == json.loads((results / "feature_stats.json").read_text())["numeric"]  # the demo's
    predictions = pl.read_parquet(syn3 / "external" / "mimic4_demo" / "models" / "mortality" / "gru" / "seed0" /
                                  "predictions.parquet")
    labelled = pl.read_parquet(syn3 / "cohort.parquet").get_column("mortality").drop_nulls().len()
    assert predictions.height == labelled and set(predictions.get_column("split")) == {"test"}
    card = (syn3 / "model_card.md").read_text()
    assert "## External validation" in card and "developed on mimic4_demo, tested on syn3" in card


def test_missing_root_setting_is_named(tmp_path):
    result = snakemake(tmp_path, {"datasets": {"x": {"kind": "mimic4"}}}, "--dry-run", check=False)
    assert result.returncode != 0
    assert "'root' is a required property" in result.stdout + result.stderr


def test_wrong_root_names_the_missing_file(tmp_path):
    result = snakemake(tmp_path, {"datasets": {"x": {"kind": "mimic3", "root": str(tmp_path / "nowhere")}}},
                       "--dry-run", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"expected {tmp_path / 'nowhere'}/" in output and "table 'patients' not found" in output


def test_bad_column_fails_the_job_with_file_and_column_and_keeps_other_outputs(tmp_path, mimic4_demo):
    root = tmp_path / "broken"
    shutil.copytree(mimic4_demo / "hosp", root / "hosp")
    shutil.copytree(mimic4_demo / "icu", root / "icu", ignore=shutil.ignore_patterns("chartevents*"))
    (root / "icu" / "chartevents.csv.gz").symlink_to(mimic4_demo / "icu" / "chartevents.csv.gz")
    with gzip.open(mimic4_demo / "icu" / "icustays.csv.gz", "rt") as src:
        text = src.read().replace("outtime", "out_time", 1)
    with gzip.open(root / "icu" / "icustays.csv.gz", "wt") as dst:
        dst.write(text)
    config = load_config("mimic4-demo.yaml", tmp_path) | {"datasets": {"broken": {"kind": "mimic4", "root": str(root)}}}
    result = snakemake(tmp_path, config, *targets("broken"), check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "broken" / "convert" / "icustays.log").read_text()
    assert "icustays.csv.gz: missing column(s) outtime" in log
    # The tables that converted are kept (keep-going): nothing already computed is lost.
    assert (tmp_path / "results" / "broken" / "parquet" / "patients.parquet").exists()


def test_lint_is_clean():
    result = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr
