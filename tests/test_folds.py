"""Cross-validation folds: patient-disjoint, every stay tested once, stratified; nothing fitted sees a fold's test
stays; pooled out-of-fold evaluation; a real run with `evaluate.folds: 3`."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from emerge_ehr.data.abnormal import training_distribution
from emerge_ehr.data.folds import assign_folds, fold_cohort
from emerge_ehr.data.timeseries import observed_statistics
from emerge_ehr.data.variables import load_variables
from emerge_ehr.evaluate.report import evaluate_predictions

from conftest import REPO
from workflow_helpers import load_config, planned_rules, snakemake


def _cohort(n_patients: int = 300, seed: int = 0) -> pl.DataFrame:
    """Patients with one to three stays each, about 12 % deaths and 15 % readmissions, some not at risk."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n_patients) + 1000, rng.integers(1, 4, n_patients))
    n = len(subjects)
    mortality = (rng.random(n) < 0.12).astype(np.int8)
    readmission = [None if died else int(r) for died, r in zip(mortality, rng.random(n) < 0.15)]
    return pl.DataFrame({
        "stay_id": np.arange(n) + 1, "subject_id": subjects, "age": rng.normal(65, 12, n),
        "mortality": mortality, "readmission": pl.Series(readmission, dtype=pl.Int8), "split": ["train"] * n,
    })


def test_folds_are_patient_disjoint_cover_every_stay_once_and_are_stratified():
    cohort = _cohort()
    folds = assign_folds(cohort, 5, seed=42)
    assert folds.height == cohort.height and folds.get_column("stay_id").is_unique().all()
    assert folds.group_by("subject_id").agg(pl.col("fold").n_unique()).get_column("fold").max() == 1
    per_fold = folds.join(cohort, on=["stay_id", "subject_id"]).group_by("fold").agg(
        pl.col("subject_id").n_unique().alias("patients"), pl.col("mortality").mean().alias("deaths"))
    assert per_fold.height == 5
    assert per_fold.get_column("patients").max() - per_fold.get_column("patients").min() <= 1
    assert per_fold.get_column("deaths").max() - per_fold.get_column("deaths").min() < 0.06
    tested = []
    for fold in range(5):
        table = fold_cohort(cohort, folds, fold, val_share=0.125, seed=42)
        assert table.columns == cohort.columns and table.get_column("stay_id").equals(cohort.get_column("stay_id"))
        by_patient = table.group_by("subject_id").agg(pl.col("split").n_unique())
        assert by_patient.get_column("split").max() == 1  # no patient in two parts of a fold
        test = table.filter(pl.col("split") == "test")
        assert set(test.get_column("stay_id")) == set(folds.filter(pl.col("fold") == fold).get_column("stay_id"))
        share = table.filter(pl.col("split") == "val").height / table.filter(pl.col("split") != "test").height
        assert 0.08 < share < 0.17
        tested += test.get_column("stay_id").to_list()
    assert sorted(tested) == cohort.get_column("stay_id").to_list()  # every stay is tested exactly once
    assert assign_folds(cohort, 5, seed=42).equals(folds) and not assign_folds(cohort, 5, seed=1).equals(folds)


def test_nothing_fitted_sees_the_folds_test_stays():
    """Normalisation statistics and abnormal-value z-scores of a fold do not change when its test stays change."""
    cohort = _cohort(60)
    table = fold_cohort(cohort, assign_folds(cohort, 3, seed=0), 1, 0.125, seed=0)
    variables = load_variables(REPO / "config" / "variables.yaml")
    rng = np.random.default_rng(3)
    hourly = pl.DataFrame({"stay_id": np.repeat(cohort.get_column("stay_id").to_numpy(), 4),
                           "hour": np.tile(np.arange(4), cohort.height)})
    hourly = hourly.with_columns([pl.Series(v.name, rng.normal(80, 10, hourly.height)) for v in variables
                                  if not v.is_categorical])
    test = table.filter(pl.col("split") == "test").get_column("stay_id").implode()
    moved = hourly.with_columns(pl.when(pl.col("stay_id").is_in(test)).then(pl.col("heart_rate") * 10)
                                .otherwise(pl.col("heart_rate")).alias("heart_rate"))
    numeric = [v for v in variables if not v.is_categorical]
    assert observed_statistics(hourly, table, numeric) == observed_statistics(moved, table, numeric)
    assert observed_statistics(hourly, cohort, numeric) != observed_statistics(moved, cohort, numeric)

    def long(frame):
        return frame.unpivot(index=["stay_id", "hour"], variable_name="variable", value_name="value").lazy()

    z_stats = training_distribution(long(hourly), table.lazy()).collect().sort("variable")
    assert z_stats.equals(training_distribution(long(moved), table.lazy()).collect().sort("variable"))


def test_a_run_is_a_file_or_its_folds_pooled(tmp_path):
    cohort = _cohort(40)
    folds = assign_folds(cohort, 2, seed=0)
    rng = np.random.default_rng(0)
    files = []
    for fold in range(2):
        table = fold_cohort(cohort, folds, fold, 0.125, seed=0).filter(pl.col("split") != "train")
        path = tmp_path / f"fold{fold}" / "predictions.parquet"
        path.parent.mkdir()
        table.select("stay_id", "split", pl.col("mortality").alias("label"),
                     pl.Series("probability", rng.random(table.height))).write_parquet(path)
        (path.parent / "summary.json").write_text(json.dumps({"train_stays": 10}))
        files.append(path)
    pooled = evaluate_predictions([files], "mortality", "gru", 50, 0.95, 0)
    assert pooled["folds"] == 2 and pooled["test_stays"] == cohort.height
    single = evaluate_predictions([files[0]], "mortality", "gru", 50, 0.95, 0)
    assert single == evaluate_predictions([[files[0]]], "mortality", "gru", 50, 0.95, 0)
    with pytest.raises(ValueError, match="a stay is a test stay in more than one of 2 folds"):
        evaluate_predictions([[files[0], files[0]]], "mortality", "gru", 50, 0.95, 0)


@pytest.mark.slow
def test_workflow_with_three_folds(tmp_path):
    config = load_config("tiny-mimic4.yaml", tmp_path)
    config["evaluate"] |= {"folds": 3}
    config["models"] = ["logreg", "gru", "oracle"]
    config["evaluate"]["reference_model"] = "logreg"  # a classic reference: its summary has no training settings
    config["train"]["seeds"] = [0]
    config["scarcity"] = {"models": ["gru"], "percents": [50, 100]}
    wanted = ["results/tiny/metrics/summary.md", "results/tiny/metrics/paper_table.md",
              "results/tiny/plots/mortality/scarcity.png", "results/tiny/plots/mortality/roc.png"]
    snakemake(tmp_path, config, *wanted)
    results = tmp_path / "results" / "tiny"
    cohort = pl.read_parquet(results / "cohort.parquet")
    tested = []
    for fold in range(3):
        table = pl.read_parquet(results / "folds" / f"fold{fold}" / "cohort.parquet")
        tested += table.filter(pl.col("split") == "test").get_column("stay_id").to_list()
        stats = json.loads((results / "folds" / f"fold{fold}" / "feature_stats.json").read_text())
        train_hours = pl.read_parquet(results / "folds" / f"fold{fold}" / "timeseries.parquet").join(
            table.filter(pl.col("split") == "train").select("stay_id"), on="stay_id", how="semi")
        assert stats["numeric"]["heart_rate"]["mean"] == pytest.approx(train_hours.get_column("heart_rate").mean())
    assert sorted(tested) == cohort.get_column("stay_id").to_list()
    for task in ("mortality", "readmission"):
        for model in config["models"]:
            metrics = json.loads((results / "metrics" / task / f"{model}.json").read_text())
            assert metrics["folds"] == 3 and metrics["test_stays"] == cohort.get_column(task).drop_nulls().len()
    assert "pooled out-of-fold predictions of 3 patient-grouped folds" in (results / "metrics" / "summary.md").read_text()
    oracle = json.loads((results / "metrics" / "mortality" / "oracle.json").read_text())
    assert oracle["versus_reference"]["model"] == "logreg" and oracle["test_stays"] == cohort.height
    scarcity = pl.read_csv(results / "scarcity" / "mortality.csv")
    assert scarcity.get_column("test_stays").to_list() == [cohort.height] * 2
    assert not (results / "models").exists()  # with folds, nothing trains on the fixed split
    assert planned_rules(snakemake(tmp_path, config, "--dry-run", *wanted)) == set()


def test_one_fold_plans_the_fixed_split_as_before(tmp_path):
    config = load_config("tiny-mimic4.yaml", tmp_path)
    rules = planned_rules(snakemake(tmp_path, config, "--dry-run", "results/tiny/metrics/summary.md"))
    assert "train" in rules and not any(rule.endswith("_fold") for rule in rules) and "fold_cohort" not in rules
