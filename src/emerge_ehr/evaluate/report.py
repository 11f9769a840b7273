"""Per-model metric files and the comparison table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.evaluate.metrics import METRICS, bootstrap, bootstrap_indices

LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "min_p_se": "min(+P, Se)", "brier": "Brier", "ece": "ECE"}


def evaluate_predictions(
    prediction_files: list[str | Path], task: str, model: str, resamples: int, level: float, seed: int
) -> dict:
    """Test-set metrics of one model over its seeds, with bootstrap confidence intervals."""
    frames = [pl.read_parquet(path).filter(pl.col("split") == "test").sort("stay_id") for path in prediction_files]
    reference = frames[0].get_column("stay_id")
    for path, frame in zip(prediction_files, frames):
        if not frame.get_column("stay_id").equals(reference):
            raise ValueError(f"{path}: test stays differ from {prediction_files[0]}")
    y = frames[0].get_column("label").to_numpy().astype(float)
    probabilities = [frame.get_column("probability").to_numpy() for frame in frames]
    indices = bootstrap_indices(len(y), resamples, seed)
    return {
        "task": task,
        "model": model,
        "seeds": len(frames),
        "test_stays": int(len(y)),
        "positives": int(y.sum()),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
        "confidence_level": level,
        "bootstrap_resamples": resamples,
        "metrics": bootstrap(y, probabilities, indices, level),
    }


def _number(value: float | None, scale: float, digits: int) -> str:
    """A metric for the table; n/a where it is undefined (e.g. a test split with a single class)."""
    return "n/a" if value is None or value != value else f"{scale * value:.{digits}f}"


def _cell(metric: dict, scale: float = 100.0, digits: int = 2) -> str:
    value, low, high = (_number(metric[k], scale, digits) for k in ("value", "ci_low", "ci_high"))
    return f"{value} [{low}, {high}]"


def comparison_table(metric_files: list[str | Path]) -> pl.DataFrame:
    """One row per task and model with each metric's value and CI bounds (x100, as in the paper)."""
    rows = []
    for path in metric_files:
        result = json.loads(Path(path).read_text())
        row = {"task": result["task"], "model": result["model"], "seeds": result["seeds"],
               "test_stays": result["test_stays"], "prevalence": result["prevalence"]}
        for name in METRICS:
            m = result["metrics"][name]
            row |= {name: m["value"], f"{name}_ci_low": m["ci_low"], f"{name}_ci_high": m["ci_high"]}
        rows.append(row)
    return pl.DataFrame(rows).sort("task", "model")


def markdown_table(table: pl.DataFrame) -> str:
    """The comparison as Markdown: value [95% CI] x100; Brier unscaled."""
    header = ["task", "model", "test stays", "prevalence"] + [LABELS[m] for m in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.iter_rows(named=True):
        cells = [row["task"], row["model"], str(row["test_stays"]), _number(row["prevalence"], 100.0, 1) + "%"]
        for name in METRICS:
            m = {"value": row[name], "ci_low": row[f"{name}_ci_low"], "ci_high": row[f"{name}_ci_high"]}
            cells.append(_cell(m) if name not in ("brier", "ece") else _cell(m, 1.0, 4))
        lines.append("| " + " | ".join(cells) + " |")
    note = ("\nValues x100 with bootstrap confidence intervals on the test split; Brier score and expected"
            " calibration error (ECE, 10 bins) unscaled.\n")
    return "\n".join(lines) + "\n" + note


def write_json(result: dict, path: str | Path) -> None:
    def clean(value):
        if isinstance(value, float) and np.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean(result), indent=2) + "\n")
