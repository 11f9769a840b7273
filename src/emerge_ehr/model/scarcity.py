"""Training on a share of the training split, for the paper's data-scarcity experiment."""

from __future__ import annotations

import numpy as np


def subsample_training(splits: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep ``fraction`` of the labelled training stays, stratified by label; the rest become ``"unused"``.

    Each class keeps ``round(fraction * n)`` stays and at least one, so even 1 % of a small cohort trains on
    both classes. The draw is a prefix of one seeded permutation per class, so for a given seed the subsets
    are nested (the 20 % subset lies inside the 40 % one) and curves over fractions are not blurred by
    unrelated draws. Validation and test stays are never touched.

    >>> splits = np.array(["train"] * 8 + ["val", "test"])
    >>> labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=float)
    >>> kept = subsample_training(splits, labels, 0.25, seed=0)
    >>> (kept == "train").sum(), labels[kept == "train"].sum(), kept[-2:].tolist()
    (np.int64(3), np.float64(1.0), ['val', 'test'])
    >>> bool(np.all(subsample_training(splits, labels, 1.0, seed=0) == splits))
    True
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train fraction must be in (0, 1], got {fraction}")
    out = np.asarray(splits).astype(object)
    if fraction == 1.0:
        return out
    rng = np.random.default_rng(seed)
    training = (out == "train") & ~np.isnan(labels)
    out[(out == "train") & np.isnan(labels)] = "unused"
    for value in np.unique(labels[training]):
        rows = np.flatnonzero(training & (labels == value))
        keep = max(1, round(fraction * len(rows)))
        out[rng.permutation(rows)[keep:]] = "unused"
    return out
