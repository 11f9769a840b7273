"""Which text a fusion model reads: the GRU's start scored as epoch 0, text kinds chosen on validation, and kinds
that no training stay had never read at prediction."""

from __future__ import annotations

import copy
import json

import numpy as np
import polars as pl
import pytest
import torch

from emerge_ehr.model.text_coverage import missing_kinds
from emerge_ehr.model.text_selection import TextSelection
from emerge_ehr.model.train import train

from conftest import train_settings

SPLITS = np.array(["train"] * 200 + ["val"] * 60 + ["test"] * 60)


def cohort(seed: int = 0, d: int = 16, hours: int = 48) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """320 stays whose label the series carries (last hours of variable 0); text of pure noise."""
    rng = np.random.default_rng(seed)
    n = len(SPLITS)
    series = rng.normal(size=(n, hours, 61)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-2.0 * series[:, -6:, 0].mean(axis=1) * 3))).astype(float)
    return {
        "series": series, "notes": rng.normal(size=(n, 3, d)).astype(np.float32), "notes_mask": np.ones((n, 3), bool),
        "summary": rng.normal(size=(n, d)).astype(np.float32), "summary_mask": np.ones(n, bool),
        "knowledge": rng.normal(size=(n, d)).astype(np.float32), "knowledge_mask": np.ones(n, bool),
    }, y


COMMON = dict(hidden_size=16, max_epochs=12, patience=4, batch_size=32, device="cpu")


@pytest.mark.parametrize("name", ["emerge_knowledge", "emerge_concat", "emerge_knowledge_late"])
def test_a_staged_model_on_text_of_pure_noise_predicts_exactly_what_its_gru_predicts(tmp_path, name):
    inputs, y = cohort()
    ids = np.arange(len(y))
    train(inputs, y, SPLITS, ids, train_settings(**COMMON), tmp_path / "gru")
    summary = train(inputs, y, SPLITS, ids, train_settings(model=name, **COMMON), tmp_path / name)
    gru = pl.read_parquet(tmp_path / "gru/predictions.parquet")
    fused = pl.read_parquet(tmp_path / name / "predictions.parquet")
    assert fused.equals(gru)  # bit for bit
    assert summary["text_kept"] == [] and summary["stages"]["text"]["kept"] == []
    assert summary["stages"]["text"]["best_epoch"] == 0
    history = pl.read_csv(tmp_path / name / "history.csv")
    start = history.filter((pl.col("stage") == "text") & (pl.col("epoch") == 0))
    assert start.get_column("inputs").to_list() == ["none"] and history.get_column("epoch").max() > 0
    # what each choice of inputs predicts, on validation and test, for the per-input analysis
    choices = pl.read_parquet(tmp_path / name / "text_choices.parquet")
    assert set(choices.get_column("inputs")) >= {"none", "notes", "notes+" + ("summary" if name == "emerge_concat"
                                                                                else "knowledge")}
    none = choices.filter(pl.col("inputs") == "none").drop("inputs")
    assert none.equals(gru)


def test_a_text_kind_that_helps_is_kept_and_one_of_noise_beside_it_is_dropped(tmp_path):
    inputs, _ = cohort(seed=1, hours=12)
    y = (np.random.default_rng(1).random(len(SPLITS)) < 0.5).astype(float)  # what the series does not tell
    inputs["notes"][:, 0, 0] += 4.0 * (y - 0.5)  # the label is in the first note chunk; the knowledge is noise
    summary = train(inputs, y, SPLITS, np.arange(len(y)), train_settings(model="emerge_knowledge", **COMMON),
                    tmp_path)
    text = summary["stages"]["text"]
    assert text["kept"] == ["notes"] == summary["text_kept"], text["candidates"]
    assert set(text["candidates"]) == {"none", "notes", "knowledge", "notes+knowledge"}
    assert text["candidates"]["notes"]["val_log_loss"] < text["candidates"]["none"]["val_log_loss"]


@pytest.mark.parametrize("name", ["emerge", "emerge_joint", "emerge_late"])
def test_a_text_kind_no_training_stay_has_is_never_read(tmp_path, name):
    """Notes only in validation and test stays: their projection is never trained, so they must not move a
    prediction; the summary, which training stays have, is read."""
    inputs, y = cohort(seed=2, hours=12)  # twelve hours: faster, and enough to show what is read
    inputs["summary"][:, 0] += 3.0 * (y - 0.5)
    training = SPLITS == "train"
    inputs["notes_mask"][training] = False
    inputs["notes"][training] = 0.0
    presence = {"notes": inputs["notes_mask"].any(axis=1), "summary": inputs["summary_mask"]}
    assert missing_kinds(name, presence, training) == ("notes",)
    without = {**inputs, "notes": np.zeros_like(inputs["notes"]), "notes_mask": np.zeros_like(inputs["notes_mask"])}
    ids = np.arange(len(y))
    settings = train_settings(model=name, **COMMON | {"max_epochs": 4})
    masked = train(inputs, y, SPLITS, ids, settings, tmp_path / "a", unavailable_kinds=("notes",))
    train(without, y, SPLITS, ids, settings, tmp_path / "b", unavailable_kinds=("notes",))
    assert pl.read_parquet(tmp_path / "a/predictions.parquet").equals(pl.read_parquet(tmp_path / "b/predictions.parquet"))
    assert masked["text_masked"] == ["notes"] and "notes" not in masked["text_kept"]
    assert json.loads((tmp_path / "a/summary.json").read_text())["text_masked"] == ["notes"]


def test_text_selection_masks_the_kinds_it_does_not_keep_and_hides_kinds_only_while_training():
    selection = TextSelection(["notes", "summary"], dropout=0.5)
    masks = {"notes": torch.ones(1000, 3, dtype=torch.bool), "summary": torch.ones(1000, dtype=torch.bool)}
    selection.eval()
    assert all(mask.all() for mask in selection(masks).values())
    selection.keep(["summary"])
    read = selection(masks)
    assert not read["notes"].any() and read["summary"].all() and selection.kept_kinds() == ("summary",)
    selection.keep(["notes", "summary"])
    selection.train()
    torch.manual_seed(0)
    hidden = selection(masks)
    assert 0.4 < 1 - hidden["summary"].float().mean() < 0.6
    assert (hidden["notes"].all(dim=1) | ~hidden["notes"].any(dim=1)).all()  # a kind is hidden whole
    state = copy.deepcopy(selection.state_dict())
    selection.keep([])
    selection.load_state_dict(state)  # a checkpoint carries the kinds kept
    assert selection.kept_kinds() == ("notes", "summary")
    with pytest.raises(ValueError, match="not among"):
        selection.keep(["nodes"])
