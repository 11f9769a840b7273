"""ROC, precision-recall and calibration curves of every trained model of a task, one PNG each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emerge_ehr.evaluate.report import Run, curves_on, skipped_reason, test_rows


def _test_predictions(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the seed-averaged probability of the test stays (pooled over folds)."""
    frames = [test_rows(run) for run in runs]
    y = frames[0].get_column("label").to_numpy().astype(float)
    return y, np.mean([f.get_column("probability").to_numpy() for f in frames], axis=0)


def plot_task(task: str, predictions: dict[str, list[Run]], roc_out: str, pr_out: str, calibration_out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figures = {name: plt.subplots(figsize=(5, 5)) for name in ("roc", "pr", "calibration")}
    where = curves_on([run for runs in predictions.values() for run in runs])
    prevalence = None
    for model, paths in predictions.items():
        if skipped_reason(paths) is not None:  # nothing to draw; the metrics tables give the reason
            continue
        y, p = _test_predictions(paths)
        prevalence = y.mean()
        fpr, tpr, _ = roc_curve(y, p)
        figures["roc"][1].plot(fpr, tpr, label=model)
        precision, recall, _ = precision_recall_curve(y, p)
        figures["pr"][1].plot(recall, precision, label=model)
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        figures["calibration"][1].plot(predicted, observed, marker="o", label=model)
    figures["roc"][1].plot([0, 1], [0, 1], "k:", lw=1)
    if prevalence is not None:
        figures["pr"][1].axhline(prevalence, color="k", ls=":", lw=1)
    figures["calibration"][1].plot([0, 1], [0, 1], "k:", lw=1)
    labels = {"roc": ("False positive rate", "True positive rate"), "pr": ("Recall", "Precision"),
              "calibration": ("Predicted risk", "Observed risk")}
    for name, out in (("roc", roc_out), ("pr", pr_out), ("calibration", calibration_out)):
        figure, axes = figures[name]
        axes.set_xlabel(labels[name][0])
        axes.set_ylabel(labels[name][1])
        axes.set_title(f"{task}: {where}, mean over seeds")
        axes.legend(fontsize=7, loc="best")
        figure.tight_layout()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=120)
        plt.close(figure)
