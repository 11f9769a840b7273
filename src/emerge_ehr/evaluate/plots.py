"""ROC and precision-recall curves of every trained model of a task, and a calibration panel per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emerge_ehr.evaluate.report import Run, curves_on, skipped_reason, test_rows


def save_figure(figure, out: str, dpi: int = 120) -> None:
    """Lay out, write (making the folder) and close a matplotlib figure: every plot of the report ends so."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    plt.close(figure)


def averaged_test_predictions(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the seed-averaged probability of the test stays (pooled over folds)."""
    frames = [test_rows(run) for run in runs]
    y = frames[0].get_column("label").to_numpy().astype(float)
    return y, np.mean([f.get_column("probability").to_numpy() for f in frames], axis=0)


def plot_task(task: str, predictions: dict[str, list[Run]], roc_out: str, pr_out: str, calibration_out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    figures = {name: plt.subplots(figsize=(5, 5)) for name in ("roc", "pr")}
    where = curves_on([run for runs in predictions.values() for run in runs])
    prevalence = None
    trained = {model: averaged_test_predictions(paths) for model, paths in predictions.items()
               if skipped_reason(paths) is None}  # a skipped model has nothing to draw; the tables give the reason
    for model, (y, p) in trained.items():
        prevalence = y.mean()
        fpr, tpr, _ = roc_curve(y, p)
        figures["roc"][1].plot(fpr, tpr, label=model)
        precision, recall, _ = precision_recall_curve(y, p)
        figures["pr"][1].plot(recall, precision, label=model)
    figures["roc"][1].plot([0, 1], [0, 1], "k:", lw=1)
    if prevalence is not None:
        figures["pr"][1].axhline(prevalence, color="k", ls=":", lw=1)
    plot_calibration(trained, f"{task}: {where}, mean over seeds", calibration_out)
    labels = {"roc": ("False positive rate", "True positive rate"), "pr": ("Recall", "Precision")}
    for name, out in (("roc", roc_out), ("pr", pr_out)):
        figure, axes = figures[name]
        axes.set_xlabel(labels[name][0])
        axes.set_ylabel(labels[name][1])
        axes.set_title(f"{task}: {where}, mean over seeds")
        axes.legend(fontsize=7, loc="best")
        save_figure(figure, out)


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, ...]:
    """Mean predicted risk, observed risk and its 95 % Wilson interval (low, high) in quantile bins of the risk.

    >>> predicted, observed, low, high = calibration_bins(np.array([0, 0, 1, 1]), np.array([.1, .2, .7, .9]), 2)
    >>> predicted.round(2).tolist(), observed.tolist(), bool(low[1] < 1.0 == high[1])
    ([0.15, 0.8], [0.0, 1.0], True)
    """
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which)
    kept = counts > 0
    n = counts[kept]
    predicted = np.bincount(which, weights=p)[kept] / n
    observed = np.bincount(which, weights=y)[kept] / n
    z = 1.96
    centre = (observed + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(observed * (1 - observed) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return predicted, observed, np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def plot_calibration(trained: dict[str, tuple[np.ndarray, np.ndarray]], title: str, out: str) -> None:
    """One small calibration panel per model: observed against predicted risk in ten quantile bins with 95 %
    Wilson intervals, and the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, max(len(trained), 1))
    rows = max(1, -(-len(trained) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax, (model, (y, p)) in zip(axes.flat, trained.items()):
        predicted, observed, low, high = calibration_bins(y, p)
        top = float(max(predicted.max(initial=0), high.max(initial=0), 0.05)) * 1.05
        ax.plot([0, top], [0, top], "k:", lw=1)
        ax.errorbar(predicted, observed, yerr=[observed - low, high - observed], fmt="o-", ms=3, lw=1, capsize=2)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_title(model, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(trained):]:
        ax.axis("off")
    figure.supxlabel("Predicted risk", fontsize=9)
    figure.supylabel("Observed risk", fontsize=9)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, out, dpi=110)
