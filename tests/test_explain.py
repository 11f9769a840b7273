"""Per-stay explanations: late fusion's decomposition sums to its logit exactly, integrated gradients to the logit
minus the baseline's; the stage reads a trained model back from its checkpoint; the case studies quote note text
only where the setting allows it, and the logs never do."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
import torch

from emerge_ehr import report_stages
from emerge_ehr.evaluate.explain import attribute, explain_rows
from emerge_ehr.model.registry import build_model
from emerge_ehr.model.train import train

from conftest import train_settings

D, STAYS = 8, 48


def _inputs(seed=0, notes=True):
    rng = np.random.default_rng(seed)
    return {"series": rng.normal(size=(STAYS, 48, 6)).astype(np.float32),
            "notes": rng.normal(size=(STAYS, 3, D)).astype(np.float32),
            "notes_mask": (rng.random((STAYS, 3)) < 0.7) & notes,
            "summary": rng.normal(size=(STAYS, D)).astype(np.float32), "summary_mask": rng.random(STAYS) < 0.8,
            "knowledge": rng.normal(size=(STAYS, D)).astype(np.float32), "knowledge_mask": rng.random(STAYS) < 0.9,
            "nodes": rng.normal(size=(STAYS, 4, D)).astype(np.float32), "nodes_mask": rng.random((STAYS, 4)) < 0.5}


def _model(name):
    torch.manual_seed(0)
    model = build_model(name, 6, 16, 0.1, D, 4, "staged").eval()
    for parameter in model.parameters():  # trained-looking weights: the zero-initialised text side made non-zero
        torch.nn.init.normal_(parameter, 0, 0.2)
    return model


@pytest.mark.parametrize("name", ["emerge_late", "emerge_knowledge_late", "ts_nodes_late"])
def test_late_fusion_decomposition_sums_to_the_logit(name):
    model, inputs = _model(name), _inputs()
    batch = {key: torch.from_numpy(value) for key, value in inputs.items()}
    found = attribute(model, batch)
    with torch.no_grad():
        logit = model(**batch).numpy()
    total = found["series"] + sum(found[kind] for kind in model.text)
    np.testing.assert_allclose(total, logit, rtol=0, atol=1e-5)
    assert np.abs(found["delta"]).max() < 1e-5
    for kind in ("notes", "nodes"):
        if kind in model.text:  # a masked slot adds nothing; the slots add up to the kind's total
            assert (found[f"{kind}_slots"][~inputs[f"{kind}_mask"]] == 0).all()
            np.testing.assert_allclose(found[f"{kind}_slots"].sum(axis=1), found[kind], atol=1e-6)


@pytest.mark.parametrize("name", ["emerge", "emerge_knowledge", "ts_nodes", "gru", "note_only"])
def test_integrated_gradients_sum_to_the_logit_minus_the_baseline(name):
    model, inputs = _model(name), _inputs()
    if name == "gru":
        inputs = {"series": inputs["series"]}
    table = explain_rows(model, inputs, np.arange(STAYS), [f"v{i}" for i in range(4)] + ["c=a", "c=b"], steps=64)
    kinds = [k for k in ("notes", "summary", "knowledge", "nodes") if table.get_column(k).null_count() == 0]
    explained = table.select(pl.sum_horizontal(["series", *kinds]) if name != "note_only" else
                             pl.sum_horizontal(kinds)).to_series().to_numpy()
    gap = table.get_column("logit").to_numpy() - table.get_column("baseline_logit").to_numpy() - explained
    assert np.abs(gap).max() < 0.02  # the path integral's residual at 64 steps
    np.testing.assert_allclose(gap, table.get_column("delta").to_numpy(), atol=1e-5)
    if name == "note_only":
        assert table.get_column("series").null_count() == STAYS and table.get_column("top_variables").list.len().max() == 0
    else:  # the one-hot columns c=a and c=b are one variable
        assert set(table.get_column("top_variables").explode()) <= {"v0", "v1", "v2", "v3", "c"}


@pytest.mark.parametrize("name, kept", [("emerge", ["summary"]), ("emerge", []), ("emerge_knowledge_late", ["notes"])])
def test_a_model_that_kept_some_of_its_text_is_explained_by_what_it_reads(name, kept):
    """A staged model whose text stage kept some kinds (or none) reads only those: they are attributed, the others
    are null, and the parts still sum to the logit (minus the baseline's)."""
    model, inputs = _model(name), _inputs()
    model.text_selection.keep(kept)
    table = explain_rows(model, inputs, np.arange(STAYS), [f"v{i}" for i in range(4)] + ["c=a", "c=b"], steps=64)
    for kind in ("notes", "summary", "knowledge", "nodes"):
        assert (table.get_column(kind).null_count() == 0) == (kind in kept), kind
    explained = table.select(pl.sum_horizontal(["series", *kept])).to_series().to_numpy()
    logit = table.get_column("logit").to_numpy()
    baseline = table.get_column("baseline_logit").fill_null(0.0).to_numpy()
    assert np.abs(logit - baseline - explained).max() < 0.02


def _trained_run(tmp_path, model, with_notes=True):
    """A model trained by the train stage on random data, laid out as the workflow lays out a run."""
    inputs = _inputs(1, with_notes)
    rng = np.random.default_rng(2)
    labels = (rng.random(STAYS) < 0.3).astype(float)
    splits = np.array(["train"] * 30 + ["val"] * 8 + ["test"] * 10)
    stay_ids = np.arange(100, 100 + STAYS)
    run = tmp_path / "models" / "mortality" / model / "seed0"
    train(inputs, labels, splits, stay_ids, train_settings(model=model, hidden_size=16, max_epochs=2, patience=1),
          run)
    np.save(tmp_path / "features.npy", inputs["series"])
    np.savez(tmp_path / "embeddings.npz", **{k: v for k, v in inputs.items() if k != "series"})
    (tmp_path / "feature_stats.json").write_text(json.dumps({"feature_names": [f"v{i}" for i in range(6)]}))
    pl.DataFrame({"stay_id": stay_ids, "split": splits, "mortality": labels.astype(np.int8)}).write_parquet(
        tmp_path / "cohort.parquet")
    return {"model": str(run / "model.pt"), "summary": str(run / "summary.json"),
            "features": str(tmp_path / "features.npy"), "feature_stats": str(tmp_path / "feature_stats.json"),
            "cohort": str(tmp_path / "cohort.parquet"), "embeddings": str(tmp_path / "embeddings.npz")}


def test_the_stage_explains_each_test_stay_of_a_trained_model(tmp_path):
    part = _trained_run(tmp_path, "emerge_late")
    report_stages.explain([part], "mortality", 16, str(tmp_path / "explained.parquet"))
    explained = pl.read_parquet(tmp_path / "explained.parquet")
    predictions = pl.read_parquet(tmp_path / "models/mortality/emerge_late/seed0/predictions.parquet").filter(
        pl.col("split") == "test")
    assert explained.get_column("stay_id").to_list() == predictions.get_column("stay_id").to_list()
    np.testing.assert_allclose(explained.get_column("probability"), predictions.get_column("probability"), atol=1e-5)
    assert set(explained.get_column("method")) == {"exact"}


def test_case_studies_quote_notes_only_when_allowed_and_logs_never(tmp_path, caplog):
    part = _trained_run(tmp_path, "emerge_joint")  # trained jointly: it reads its notes, whatever they tell
    report_stages.explain([part], "mortality", 16, str(tmp_path / "explained.parquet"))
    secret = "patient reports crushing substernal chest pain radiating to the jaw"
    pl.DataFrame({"stay_id": np.arange(100, 100 + STAYS), "note_id": "n", "charttime": 0, "text": secret,
                  "mortality": True}).write_parquet(tmp_path / "notes.parquet")
    pl.DataFrame({"task": "mortality", "stay_id": np.arange(100, 100 + STAYS), "abnormal_features": [["heart rate too high"]] * STAYS,
                  "node_names": [["Tachycardia"]] * STAYS, "definitions": "Tachycardia: fast.",
                  "triples": "(Tachycardia, parent-child, Arrhythmia)"}).write_parquet(tmp_path / "context.parquet")
    settings = {"cases": 2, "seed": 0, "show_note_text": False}
    chunking = {"chunk_words": 150, "max_chunks": 3}
    with caplog.at_level(logging.DEBUG):
        for show, out in ((False, "hidden.md"), (True, "shown.md")):
            report_stages.explanation_report({"emerge_joint": str(tmp_path / "explained.parquet")},
                                      [str(tmp_path / "context.parquet")], str(tmp_path / "notes.parquet"),
                                      "mortality", settings | {"show_note_text": show}, chunking, str(tmp_path / out),
                                          str(tmp_path / f"{out}.png"))
    hidden, shown = (tmp_path / "hidden.md").read_text(), (tmp_path / "shown.md").read_text()
    assert "Tachycardia" in hidden and "heart rate too high" in hidden and "highest risk" in hidden
    assert secret not in hidden and secret in shown
    assert secret not in caplog.text
