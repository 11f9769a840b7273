"""The paper's ablation claims as paired differences on one run, each with the smallest effect it can resolve.

Each claim compares two models on the same test stays (pooled out of fold with folds) and the same bootstrap
resamples as the evaluate stage. Where an interval spans zero, the question is whether the run is too small or the
effect absent: the minimal detectable effect (MDE) answers it, the true difference that a run of this size would
find with its interval above zero 80 % of the time, (z(1 - alpha/2) + z(0.8)) x the bootstrap standard deviation
of the difference. An effect below it is not resolvable here; one above it would have been seen.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

from emerge_ehr.evaluate.report import evaluate_predictions, kept_text_note, text_kept

# (claim, model, against): which comparison answers which of the paper's claims; a claim whose models the run
# does not train is left out
CLAIMS = (
    ("EMERGE (cross-attention, staged) beats the time series", "emerge", "gru"),
    ("EMERGE with the knowledge text (cross-attention, staged) beats the time series", "emerge_knowledge", "gru"),
    ("the same, trained jointly (the paper's schedule)", "emerge_knowledge_joint", "gru"),
    ("staged against joint training", "emerge_knowledge", "emerge_knowledge_joint"),
    ("staged against joint training (LLM summary)", "emerge", "emerge_joint"),
    ("the retrieved knowledge adds to the notes (cross-attention)", "emerge_knowledge", "ts_note"),
    ("the retrieved knowledge adds to the notes (late fusion)", "emerge_knowledge_late", "ts_note_late"),
    ("the LLM summary adds to the notes", "emerge", "ts_note"),
    ("the notes add to the knowledge (cross-attention)", "emerge_knowledge", "ts_knowledge"),
    ("cross-attention against linear late fusion", "emerge_knowledge", "emerge_knowledge_late"),
    ("LLM summary against the knowledge text it was written from", "emerge", "emerge_knowledge"),
    ("EMERGE with the knowledge text, late fusion, beats the time series", "emerge_knowledge_late", "gru"),
    ("EMERGE with the LLM summary, late fusion, beats the time series", "emerge_late", "gru"),
)


def minimal_detectable_effect(std: float, level: float = 0.95, power: float = 0.8) -> float:
    """The true difference found with its interval above zero with probability ``power``, given the bootstrap
    standard deviation of the difference.

    >>> round(minimal_detectable_effect(1.0), 2)
    2.8
    """
    normal = NormalDist()
    return (normal.inv_cdf(1 - (1 - level) / 2) + normal.inv_cdf(power)) * std


def model_runs(results: Path, task: str, model: str, folds: int, seeds: list[int], percent: int = 100) -> list:
    """One run per seed: its predictions file, or with folds its fold files; below 100 % the scarcity runs."""
    part = f"models/{task}/{model}" if percent == 100 else f"scarcity/{task}/{model}/percent{percent}"
    if folds > 1:
        return [[results / f"folds/fold{k}/{part}/seed{s}/predictions.parquet" for k in range(folds)] for s in seeds]
    return [results / f"{part}/seed{s}/predictions.parquet" for s in seeds]


def compare(results: Path, task: str, model: str, against: str, folds: int, seeds: list[int], resamples: int,
            level: float, seed: int, percent: int = 100) -> dict | None:
    """The paired AUROC and AUPRC differences of ``model`` against ``against`` (x100) with their intervals and
    MDEs; None where either was skipped (no text to read)."""
    runs, reference = (model_runs(results, task, m, folds, seeds, percent) for m in (model, against))
    result = evaluate_predictions(runs, task, model, resamples, level, seed, reference, against)
    if "skipped" in result or "metrics" not in result.get("versus_reference", {}):
        return None
    kept = {name: kept_text_note(text_kept(model_runs(results, task, name, folds, seeds, percent)))
            for name in (model, against)}
    row = {"task": task, "model": model, "against": against, "percent": percent, "test_stays": result["test_stays"],
           "positives": result["positives"], "text_kept": {name: note for name, note in kept.items() if note}}
    for metric, d in result["versus_reference"]["metrics"].items():
        row |= {metric: 100 * d["difference"], f"{metric}_ci_low": 100 * d["ci_low"],
                f"{metric}_ci_high": 100 * d["ci_high"], f"{metric}_mde": 100 * minimal_detectable_effect(d["std"], level)}
    return row


def ablation_rows(results: Path, tasks: list[str], models: list[str], folds: int, seeds: list[int], resamples: int,
                  level: float, seed: int, scarcity: dict[str, list[int]] | None = None) -> list[dict]:
    """Every claim the run's ``models`` answer, per task; then, for each scarcity model, its difference from the
    GRU at each share of the training data below 100 % (``scarcity``: model -> percents)."""
    rows = []
    for task in tasks:
        for claim, model, against in CLAIMS:
            if model not in models or against not in models:
                continue
            if (row := compare(results, task, model, against, folds, seeds, resamples, level, seed)) is not None:
                rows.append({"claim": claim} | row)
        for model, percents in (scarcity or {}).items():
            if model == "gru" or "gru" not in scarcity:
                continue
            for percent in sorted(p for p in percents if p < 100):
                row = compare(results, task, model, "gru", folds, seeds, resamples, level, seed, percent)
                if row is not None:
                    rows.append({"claim": f"with {percent} % of the training labels, {model} beats the GRU"} | row)
    return rows


def _difference(row: dict, metric: str) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    verdict = " **" if low > 0 else " (below)" if high < 0 else ""
    return f"{row[metric]:+.2f} [{low:+.2f}, {high:+.2f}]{verdict}"


def ablation_markdown(rows: list[dict], level: float, evaluated_on: str) -> str:
    """One table: each claim's paired difference with its interval, and the smallest effect the run resolves."""
    if not rows:
        return ("No ablation claim is answered by this run's models (docs: config/README.md, `models`; the claims"
                " compare e.g. emerge_knowledge with gru and with emerge_knowledge_joint).\n")
    lines = ["| claim | task | model | against | AUROC difference | AUPRC difference | AUPRC MDE |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['claim']} | {row['task']} | {row['model']} | {row['against']} | "
                     f"{_difference(row, 'auroc')} | {_difference(row, 'auprc')} | {row['auprc_mde']:.2f} |")
    note = (f"\nx100, on {evaluated_on}: paired bootstrap differences with their {100 * level:.0f} % intervals; **"
            " marks an interval above zero, (below) one below zero. MDE: the smallest true AUPRC difference this run"
            " finds with its interval above zero 80 % of the time; an interval across zero with an MDE above the"
            " effect means the run is too small to decide.\n")
    kept = {(row["task"], name): text for row in rows for name, text in row.get("text_kept", {}).items()}
    notes = "".join(f"\n{name}, {task}: {text}.\n" for (task, name), text in kept.items())
    return "\n".join(lines) + "\n" + note + notes
