"""Subgroup metrics: each group's numbers are the overall metric computed on that group alone; small groups and
groups with one outcome are listed with the reason; race and insurance reach the cohort from real MIMIC-IV."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from emerge_ehr.data.tables import convert
from emerge_ehr.evaluate.subgroups import subgroup_metrics


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.2, n), 0.01, 0.99)
    sex = rng.choice(["F", "M"], n)
    race = np.where(np.arange(n) < 20, "Asian", rng.choice(["White", "Black"], n))
    return y, p, sex, race


def test_each_group_equals_the_metric_computed_on_that_group_by_hand():
    y, p, sex, race = _data()
    second_seed = np.clip(p * 0.8 + 0.05, 0, 1)
    table = subgroup_metrics(y, [p, second_seed], {"sex": sex, "race": race}, resamples=50, level=0.95, seed=0,
                             min_stays=30)
    for attribute, values in (("sex", sex), ("race", race)):
        for group in np.unique(values):
            row = table.filter((pl.col("attribute") == attribute) & (pl.col("group") == group)).row(0, named=True)
            mask = values == group
            assert row["stays"] == mask.sum() and row["positives"] == y[mask].sum()
            assert row["observed_risk"] == pytest.approx(y[mask].mean())
            assert row["predicted_risk"] == pytest.approx(np.mean([p[mask], second_seed[mask]]))
            if row["status"] != "ok":
                continue
            for name, fn in (("auroc", roc_auc_score), ("auprc", average_precision_score),
                             ("brier", brier_score_loss)):
                expected = np.mean([fn(y[mask], q[mask]) for q in (p, second_seed)])
                assert row[name] == pytest.approx(expected, abs=1e-9), (attribute, group, name)
                assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"]


def test_a_small_group_is_listed_with_its_counts_and_not_scored():
    y, p, sex, race = _data()
    table = subgroup_metrics(y, [p], {"race": race}, resamples=20, level=0.95, seed=0, min_stays=30)
    asian = table.filter(pl.col("group") == "Asian").row(0, named=True)
    assert asian["stays"] == 20
    assert asian["status"] == "too small: 20 stays < 30"
    assert asian["auroc"] is None and asian["auprc"] is None
    assert table.filter(pl.col("group") != "Asian").get_column("status").to_list() == ["ok", "ok"]


def test_a_group_with_one_outcome_says_so():
    y = np.array([0.0] * 40 + [0.0] * 30 + [1.0] * 30)
    groups = np.array(["a"] * 40 + ["b"] * 60)
    table = subgroup_metrics(y, [np.linspace(0, 1, 100)], {"g": groups}, resamples=20, level=0.95, seed=0,
                             min_stays=10)
    assert table.filter(pl.col("group") == "a").get_column("status").item() == "one outcome only: no positive"


def test_race_and_insurance_reach_the_cohort_from_the_mimic4_demo(tmp_path, mimic4_demo):
    out = tmp_path / "admissions.parquet"
    convert(mimic4_demo, "mimic4", "admissions", out)
    admissions = pl.read_parquet(out)
    assert admissions.get_column("race").null_count() == 0
    assert admissions.get_column("insurance").null_count() == 0
    assert {"WHITE", "BLACK/AFRICAN AMERICAN"} <= set(admissions.get_column("race"))
