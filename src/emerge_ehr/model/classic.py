"""Non-neural baselines on per-stay aggregates of the hourly inputs: logistic regression, gradient boosting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

CLASSIC_MODELS = ("logreg", "gbm")


def aggregates(series: np.ndarray) -> np.ndarray:
    """Mean, minimum, maximum and last value of every input over the hours: (stays, 4 x inputs)."""
    return np.concatenate([series.mean(1), series.min(1), series.max(1), series[:, -1]], axis=1)


def train_classic(
    name: str, series: np.ndarray, labels: np.ndarray, splits: np.ndarray, stay_ids: np.ndarray, seed: int,
    out_dir: str | Path,
) -> dict:
    """Fit on the training split (the validation split is not needed), predict validation and test stays."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name not in CLASSIC_MODELS:
        raise ValueError(f"unknown classic model {name!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = aggregates(series)
    known = ~np.isnan(labels)
    train = known & (splits == "train")
    if name == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    else:
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, early_stopping=False, random_state=seed)
    model.fit(x[train], labels[train].astype(int))
    frames = []
    for part in ("val", "test"):
        rows = np.flatnonzero(known & (splits == part))
        frames.append(pl.DataFrame({
            "stay_id": stay_ids[rows].astype(np.int64), "split": [part] * len(rows),
            "label": labels[rows].astype(np.int8), "probability": model.predict_proba(x[rows])[:, 1].astype(np.float64),
        }))
    pl.concat(frames).write_parquet(out_dir / "predictions.parquet")
    summary = {"model": name, "seed": seed, "train_stays": int(train.sum()), "features": int(x.shape[1])}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "history.csv").write_text("epoch\n")  # no epochs: fitted in one go
    import torch

    torch.save({"sklearn_model": model, "inputs": "mean, min, max, last of each hourly input"}, out_dir / "model.pt")
    return summary
