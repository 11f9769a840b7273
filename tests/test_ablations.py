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


def test_a_staged_model_that_kept_no_text_in_some_folds_is_said_so_per_fold(tmp_path):
    """With folds, each fold's text stage chooses on its own validation split: the tables say which kept what,
    and a model that kept no text anywhere is named as predicting as its GRU."""
    from emerge_ehr.evaluate.report import evaluate_predictions, paper_markdown, paper_table, write_json

    rng = np.random.default_rng(1)
    y = (rng.random(N) < 0.2).astype(float)
    kept = {"emerge_knowledge": [["notes", "knowledge"], [], ["notes"]], "ts_note": [[], [], []], "gru": None}
    for model, per_fold in kept.items():
        for fold in range(3):
            out = tmp_path / f"folds/fold{fold}/models/mortality/{model}/seed0"
            out.mkdir(parents=True)
            rows = np.arange(fold, N, 3)
            pl.DataFrame({"stay_id": rows, "split": "test", "label": y[rows].astype(np.int8),
                          "probability": rng.random(len(rows))}, schema=PREDICTION_SCHEMA).write_parquet(
                out / "predictions.parquet")
            stages = {} if per_fold is None else {"stages": {"series": {}, "text": {"kept": per_fold[fold]}}}
            (out / "summary.json").write_text(json.dumps({"train_stays": 100} | stages))
    rows = ablation_rows(tmp_path, ["mortality"], list(kept), 3, [0], 50, 0.95, 0)
    markdown = ablation_markdown(rows, 0.95, "pooled out of fold")
    assert "emerge_knowledge, mortality: text kept per fold: 0 notes+knowledge, 1 none, 2 notes." in markdown
    assert "ts_note, mortality: kept no text in any run: predicts as its GRU." in markdown
    paths = []
    for model in kept:
        runs = [[tmp_path / f"folds/fold{k}/models/mortality/{model}/seed0/predictions.parquet" for k in range(3)]]
        write_json(evaluate_predictions(runs, "mortality", model, 50, 0.95, 0), tmp_path / f"{model}.json")
        paths.append(tmp_path / f"{model}.json")
    paper = paper_markdown(paper_table(paths, list(kept), ["mortality"]), ["mortality"], None, 0.95)
    assert "emerge_knowledge, mortality: text kept per fold: 0 notes+knowledge, 1 none, 2 notes." in paper
