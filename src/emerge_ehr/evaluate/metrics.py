"""Binary classification metrics of the EMERGE paper, with bootstrap confidence intervals.

Implemented in NumPy (checked against scikit-learn in the tests) so that a thousand bootstrap
resamples of a test set take well under a second.
"""

from __future__ import annotations

import numpy as np

METRICS = ("auroc", "auprc", "min_p_se", "brier", "ece")


def _sorted_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative true and false positives at each distinct threshold, from the highest score down."""
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last_of_tie = np.r_[np.nonzero(np.diff(p))[0], len(p) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps, fps, int(y.sum())


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tps, fps, _ = _sorted_counts(y, p)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return float(np.trapezoid(tpr, fpr))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (scikit-learn's definition: a step-wise sum, no interpolation)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    tps, fps, n_pos = _sorted_counts(y, p)
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def min_p_se(y: np.ndarray, p: np.ndarray) -> float:
    """min(+P, Se): the best, over thresholds, of the smaller of precision and sensitivity."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    tps, fps, n_pos = _sorted_counts(y, p)
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.max(np.minimum(precision, recall)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the predicted probability."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return float(np.mean((p - y) ** 2))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the mean gap between predicted and observed risk over equal-width bins,
    weighted by the share of stays in each bin."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=p, minlength=bins) - np.bincount(which, weights=y, minlength=bins))
    return float(gap.sum() / max(len(y), 1)) if counts.sum() else float("nan")


METRIC_FUNCTIONS = {"auroc": auroc, "auprc": auprc, "min_p_se": min_p_se, "brier": brier, "ece": ece}


def point_estimates(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {name: METRIC_FUNCTIONS[name](y, p) for name in METRICS}


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """Resample indices (resamples x n), shared by every model and seed so that their CIs are comparable."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap(
    y: np.ndarray, probabilities: list[np.ndarray], indices: np.ndarray, level: float = 0.95,
    metrics: tuple[str, ...] = METRICS,
) -> dict[str, dict[str, float]]:
    """Point estimate, bootstrap mean, std and percentile CI of each metric, averaged over seeds.

    ``probabilities`` holds one prediction vector per training seed, aligned with ``y``. In each
    resample the metric is computed for every seed and averaged, so the interval covers both test-set
    sampling and seed-to-seed variation of the mean. Resamples with a single class are skipped.
    """
    y = np.asarray(y, dtype=float)
    result: dict[str, dict[str, float]] = {}
    alpha = (1.0 - level) / 2.0
    for name in metrics:
        fn = METRIC_FUNCTIONS[name]
        point = float(np.mean([fn(y, p) for p in probabilities]))
        values = []
        for idx in indices:
            ys = y[idx]
            if ys.min() == ys.max():
                continue
            values.append(np.mean([fn(ys, p[idx]) for p in probabilities]))
        values = np.asarray(values)
        result[name] = {
            "value": point,
            "bootstrap_mean": float(values.mean()) if len(values) else float("nan"),
            "bootstrap_std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "ci_low": float(np.quantile(values, alpha)) if len(values) else float("nan"),
            "ci_high": float(np.quantile(values, 1.0 - alpha)) if len(values) else float("nan"),
            "resamples": int(len(values)),
        }
    return result


def paired_difference(
    y: np.ndarray, probabilities: list[np.ndarray], reference: list[np.ndarray], indices: np.ndarray,
    level: float = 0.95, metrics: tuple[str, ...] = ("auroc", "auprc"),
) -> dict[str, dict[str, float]]:
    """Difference of each metric between a model and a reference model, with a paired bootstrap CI.

    Both are scored on the same resamples, so the interval reflects how much the *difference* varies,
    which is far narrower than comparing two separate intervals when the models' errors are correlated.
    An interval above zero means the model beats the reference at this confidence level.
    """
    y = np.asarray(y, dtype=float)
    alpha = (1.0 - level) / 2.0
    result = {}
    for name in metrics:
        fn = METRIC_FUNCTIONS[name]

        def mean_gap(rows):
            return np.mean([fn(y[rows], p[rows]) for p in probabilities]) - np.mean(
                [fn(y[rows], r[rows]) for r in reference])

        gaps = np.asarray([mean_gap(idx) for idx in indices if y[idx].min() != y[idx].max()])
        result[name] = {
            "difference": float(mean_gap(np.arange(len(y)))),
            "ci_low": float(np.quantile(gaps, alpha)) if len(gaps) else float("nan"),
            "ci_high": float(np.quantile(gaps, 1.0 - alpha)) if len(gaps) else float("nan"),
            "std": float(np.std(gaps, ddof=1)) if len(gaps) > 1 else float("nan"),  # for the power analysis
            "resamples": int(len(gaps)),
        }
    return result
