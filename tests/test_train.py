"""The GRU baseline: shapes, determinism under a seed, and that it learns a planted signal."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from emerge_ehr.model.sequence import SequenceClassifier
from emerge_ehr.model.train import resolve_device, train

from conftest import train_settings


def planted(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 5)).astype(np.float32)
    logits = 2.0 * x[:, -3:, 0].mean(axis=1)
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * logits))).astype(float)
    splits = np.array(["train"] * int(0.6 * n) + ["val"] * int(0.2 * n) + ["test"] * (n - int(0.8 * n)))
    return {"series": x}, y, splits, np.arange(n) + 1000


def test_shapes_including_a_batch_of_one():
    model = SequenceClassifier("gru", 61, hidden_size=16)
    assert model(torch.zeros(1, 48, 61)).shape == (1,)
    assert model(torch.zeros(7, 48, 61)).shape == (7,)


def test_deterministic_given_a_seed_and_learns(tmp_path):
    x, y, splits, ids = planted()
    settings = train_settings(hidden_size=16, max_epochs=15, patience=5, batch_size=32, seed=3, device="cpu")
    train(x, y, splits, ids, settings, tmp_path / "a")
    train(x, y, splits, ids, settings, tmp_path / "b")
    a = pl.read_parquet(tmp_path / "a/predictions.parquet")
    b = pl.read_parquet(tmp_path / "b/predictions.parquet")
    assert a.equals(b)
    test = a.filter(pl.col("split") == "test")
    from emerge_ehr.evaluate.metrics import auroc

    assert auroc(test["label"].to_numpy(), test["probability"].to_numpy()) > 0.75
    other = train(x, y, splits, ids, train_settings(**{**settings.__dict__, "seed": 4}), tmp_path / "c")
    assert not a.equals(pl.read_parquet(tmp_path / "c/predictions.parquet"))
    assert other["epochs_run"] <= 15
    assert (tmp_path / "a/model.pt").exists() and (tmp_path / "a/history.csv").exists()


def test_unlabelled_stays_are_left_out(tmp_path):
    """Stays not at risk (no label) in each split: not trained on, not predicted, and not scored."""
    x, y, splits, ids = planted(120)
    missing = [0, 1, 72, 73, 96, 97]  # two of the training, validation and test rows each
    assert [splits[i] for i in missing] == ["train", "train", "val", "val", "test", "test"]
    y[missing] = np.nan
    summary = train(x, y, splits, ids, train_settings(hidden_size=8, max_epochs=2, device="cpu"), tmp_path)
    predictions = pl.read_parquet(tmp_path / "predictions.parquet")
    assert not set(predictions.get_column("stay_id")) & set(ids[missing])
    assert predictions.height == int((splits != "train").sum()) - 4
    assert summary["train_stays"] == int((splits == "train").sum()) - 2
    assert predictions.get_column("probability").is_finite().all() and np.isfinite(summary["best_val_score"])


def test_missing_cuda_is_an_error_not_a_silent_fallback():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="train.device"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["logreg", "gbm"])
def test_classic_baselines_learn_a_planted_signal(tmp_path, name):
    from emerge_ehr.evaluate.metrics import auroc
    from emerge_ehr.model.classic import train_classic

    inputs, y, splits, ids = planted(400)
    train_classic(name, inputs["series"], y, splits, ids, seed=0, out_dir=tmp_path)
    test = pl.read_parquet(tmp_path / "predictions.parquet").filter(pl.col("split") == "test")
    assert set(test.columns) == {"stay_id", "split", "label", "probability"}
    assert auroc(test["label"].to_numpy(), test["probability"].to_numpy()) > 0.7


def test_subsampling_is_stratified_nested_and_leaves_val_and_test_alone():
    from emerge_ehr.model.scarcity import subsample_training

    rng = np.random.default_rng(0)
    splits = rng.choice(["train", "val", "test"], size=1000, p=[0.7, 0.1, 0.2]).astype(object)
    labels = (rng.random(1000) < 0.1).astype(float)
    labels[:5] = np.nan
    kept = {f: subsample_training(splits, labels, f, seed=4) for f in (0.01, 0.2, 0.4, 1.0)}
    labelled_train = (splits == "train") & ~np.isnan(labels)
    positives = labels[labelled_train].sum()
    for fraction in (0.2, 0.4):
        chosen = kept[fraction] == "train"
        assert chosen.sum() == pytest.approx(fraction * labelled_train.sum(), abs=2)
        assert labels[chosen].sum() == round(fraction * positives)
        assert np.all(kept[fraction][splits != "train"] == splits[splits != "train"])
    assert labels[kept[0.01] == "train"].sum() >= 1  # both classes even at 1 %
    assert np.all((kept[0.2] == "train") <= (kept[0.4] == "train"))  # nested
    assert np.array_equal(kept[1.0], splits)
    with pytest.raises(ValueError, match="fraction"):
        subsample_training(splits, labels, 0.0, seed=0)


def test_training_asks_pytorch_for_deterministic_kernels():
    """What a GPU needs for the same numbers twice (cuBLAS workspace, cuDNN without autotuning); set on a CPU too,
    where they are harmless."""
    import os

    from emerge_ehr.model.train import seed_everything

    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
