"""The data-scarcity experiment: test metrics of models trained on shares of the training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.evaluate.report import Run, evaluate_predictions, train_stays

CURVE_METRICS = ("auroc", "auprc")


SCARCITY_SCHEMA = {
    "task": pl.String, "model": pl.String, "percent": pl.Int64, "train_stays": pl.Float64, "skipped": pl.String,
    "test_stays": pl.Int64,
} | {f"{name}{suffix}": pl.Float64 for name in CURVE_METRICS for suffix in ("", "_ci_low", "_ci_high")}


def scarcity_table(
    runs: dict[str, dict[int, list[Run]]], task: str, resamples: int, level: float, seed: int
) -> pl.DataFrame:
    """One row per model and training percentage: training stays and AUROC/AUPRC with bootstrap CIs.

    ``runs`` maps model -> percent -> the runs of its seeds (a prediction file, or one per fold). Every run shares one test split and
    one set of bootstrap resamples, so the points of a curve are directly comparable. A skipped run (a text
    model whose share of the training split has no text) has its reason and null metrics.
    """
    rows = []
    for model, by_percent in runs.items():
        for percent, files in sorted(by_percent.items()):
            result = evaluate_predictions(files, task, model, resamples, level, seed)
            stays = [train_stays(run) for run in files]
            row = {"task": task, "model": model, "percent": percent, "train_stays": float(np.mean(stays)),
                   "skipped": result.get("skipped"), "test_stays": result.get("test_stays")}
            for name in CURVE_METRICS:
                m = result.get("metrics", {}).get(name, {})
                row |= {name: m.get("value"), f"{name}_ci_low": m.get("ci_low"), f"{name}_ci_high": m.get("ci_high")}
            rows.append(row)
    return pl.DataFrame(rows, schema=SCARCITY_SCHEMA)


def plot_scarcity(table: pl.DataFrame, task: str, where: str, out: str | Path) -> None:
    """AUROC and AUPRC against the share of training data, one line per model with its CI band; ``where``:
    what the points were computed on (``report.curves_on``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emerge_ehr.evaluate.plots import save_figure

    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    trained = table.filter(pl.col("skipped").is_null())
    for model in trained.get_column("model").unique(maintain_order=True):
        rows = trained.filter(pl.col("model") == model).sort("percent")
        x = rows.get_column("percent").to_numpy()
        for ax, name in zip(axes, CURVE_METRICS):
            line, = ax.plot(x, rows.get_column(name).to_numpy(), marker="o", label=model)
            ax.fill_between(x, rows.get_column(f"{name}_ci_low").to_numpy(),
                            rows.get_column(f"{name}_ci_high").to_numpy(), color=line.get_color(), alpha=0.15)
    for ax, name in zip(axes, CURVE_METRICS):
        ax.set_xlabel("Share of the training split (%)")
        ax.set_ylabel(name.upper())
        ax.set_title(f"{task}: {name.upper()}, {where}")
    axes[0].legend(fontsize=8)
    save_figure(figure, out)
