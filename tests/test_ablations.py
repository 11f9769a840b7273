"""The ablation table: each claim the run can answer, as a paired difference with its interval and MDE."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from emerge_ehr.evaluate.ablations import ablation_markdown, ablation_rows, minimal_detectable_effect
from emerge_ehr.evaluate.metrics import auprc
from emerge_ehr.model.train import PREDICTION_SCHEMA

N = 400


def _write(results, part: str, probabilities: np.ndarray, labels: np.ndarray, skipped: str | None = None) -> None:
    out = results / part / "seed0"
    out.mkdir(parents=True)
    rows = 0 if skipped else N
    pl.DataFrame({"stay_id": np.arange(rows), "split": ["test"] * rows, "label": labels[:rows].astype(np.int8),
                  "probability": probabilities[:rows]}, schema=PREDICTION_SCHEMA).write_parquet(
        out / "predictions.parquet")
    (out / "summary.json").write_text(json.dumps({"train_stays": 1000} | ({"skipped": skipped} if skipped else {})))


def test_claims_are_paired_differences_with_an_mde_and_missing_models_are_left_out(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(N) < 0.2).astype(float)
    gru = np.clip(0.2 * y + 0.8 * rng.random(N), 0, 1)
    emerge = np.clip(0.5 * y + 0.5 * rng.random(N), 0, 1)
    for part, p in {"models/mortality/gru": gru, "models/mortality/emerge_knowledge": emerge,
                    "models/mortality/ts_note": gru * 0.9,
                    "scarcity/mortality/emerge_knowledge/percent10": gru,
                    "scarcity/mortality/gru/percent10": gru}.items():
        _write(tmp_path, part, p, y)
    models = ["gru", "emerge_knowledge", "ts_note", "emerge_knowledge_joint"]  # the joint one was skipped:
    _write(tmp_path, "models/mortality/emerge_knowledge_joint", gru, y, skipped="no stay has a note")
    rows = ablation_rows(tmp_path, ["mortality"], models, 1, [0], 200, 0.95, 0,
                         {"emerge_knowledge": [10, 100], "gru": [10]})
    pairs = [(row["model"], row["against"], row["percent"]) for row in rows]
    assert pairs == [("emerge_knowledge", "gru", 100), ("emerge_knowledge", "ts_note", 100),
                     ("emerge_knowledge", "gru", 10)]  # skipped, or not in the run's models: left out
    first = rows[0]
    assert first["auprc"] == pytest.approx(100 * (auprc(y, emerge) - auprc(y, gru)))
    assert first["auprc_ci_low"] > 0 and first["auprc_mde"] > 0
    assert rows[2]["auprc"] == 0.0 and rows[2]["auprc_mde"] == 0.0  # the same predictions: no spread
    markdown = ablation_markdown(rows, 0.95, "the test split")
    assert markdown.count("\n| ") == 3 and " **" in markdown  # a row per comparison under the header
    assert "with 10 % of the training labels, emerge_knowledge beats the GRU" in markdown
    assert ablation_markdown([], 0.95, "the test split").startswith("No ablation claim")


def test_the_mde_is_the_power_analysis_of_a_normal_difference():
    assert minimal_detectable_effect(1.0, 0.95, 0.8) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert minimal_detectable_effect(2.0, 0.95, 0.5) == pytest.approx(2 * 1.959964, abs=1e-5)
