"""Per-model metric files and the comparison table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.evaluate.metrics import METRICS, bootstrap, bootstrap_indices, paired_difference

LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "min_p_se": "min(+P, Se)", "brier": "Brier", "ece": "ECE"}


Run = str | Path | list[str | Path]  # one seed's predictions: a file, or one file per cross-validation fold


def run_files(run: Run) -> list[Path]:
    return [Path(run)] if isinstance(run, (str, Path)) else [Path(path) for path in run]


def curves_on(runs: list[Run]) -> str:
    """A plot title's account of its predictions: the test split, or with folds the pooled out-of-fold ones.

    >>> curves_on(["seed0.parquet"]), curves_on([["fold0.parquet", "fold1.parquet"]])
    ('test split', 'pooled out of fold')
    """
    return "pooled out of fold" if any(len(run_files(run)) > 1 for run in runs) else "test split"


def test_rows(run: Run) -> pl.DataFrame:
    """The test rows of one seed's predictions, by stay; with folds, the folds' test rows pooled (every stay
    is a test stay in exactly one fold, so each has one out-of-fold prediction)."""
    files = run_files(run)
    frame = pl.concat([pl.read_parquet(path).filter(pl.col("split") == "test") for path in files]).sort("stay_id")
    if frame.get_column("stay_id").is_duplicated().any():
        raise ValueError(f"{files[0].parent}: a stay is a test stay in more than one of {len(files)} folds")
    return frame


def test_split(runs: list[Run], reference: pl.Series | None = None):
    """Test labels and one probability vector per seed; every seed must hold the same test stays."""
    frames = [test_rows(run) for run in runs]
    reference = frames[0].get_column("stay_id") if reference is None else reference
    for run, frame in zip(runs, frames):
        if not frame.get_column("stay_id").equals(reference):
            raise ValueError(f"{run_files(run)[0]}: test stays differ from those of the other prediction files")
    y = frames[0].get_column("label").to_numpy().astype(float)
    return y, [frame.get_column("probability").to_numpy() for frame in frames], reference


def run_summary(run: Run) -> dict:
    """The summary.json the train job writes beside its predictions (the first fold's, with folds)."""
    return json.loads((run_files(run)[0].parent / "summary.json").read_text())


def train_stays(run: Run) -> float:
    """Training stays of one seed's run, averaged over its folds."""
    return float(np.mean([run_summary(path)["train_stays"] for path in run_files(run)]))


def text_kept(runs: list[Run]) -> list[dict] | None:
    """For a model whose text stage chooses its text (staged fusion): the text kinds each run kept, per seed and
    fold; None for the other models."""
    kept = [{"seed": seed, "fold": fold,
             "kept": json.loads((path.parent / "summary.json").read_text()).get("stages", {}).get("text", {}).get("kept")}
            for seed, run in enumerate(runs) for fold, path in enumerate(run_files(run))]
    return kept if any(entry["kept"] is not None for entry in kept) else None


def kept_text_note(kept: list[dict] | None) -> str | None:
    """What a staged fusion model's runs kept of their text, in words, for the tables; None when every run kept the
    same text (nothing to say) or the model chooses none.

    >>> kept_text_note([{"seed": 0, "fold": 0, "kept": []}, {"seed": 0, "fold": 1, "kept": []}])
    'kept no text in any run: predicts as its GRU'
    >>> kept_text_note([{"seed": 0, "fold": f, "kept": k} for f, k in enumerate([["notes"], [], ["notes"]])])
    'text kept per fold: 0 notes, 1 none, 2 notes'
    >>> kept_text_note([{"seed": s, "fold": 0, "kept": ["notes", "summary"]} for s in range(3)]) is None
    True
    """
    if not kept or all(entry["kept"] is None for entry in kept):
        return None
    names = ["+".join(entry["kept"]) or "none" for entry in kept]
    if all(name == "none" for name in names):
        return "kept no text in any run: predicts as its GRU"
    if len(set(names)) == 1:
        return None
    folds = len({entry["fold"] for entry in kept}) > 1
    seeds = len({entry["seed"] for entry in kept}) > 1
    label = "seed and fold" if folds and seeds else "fold" if folds else "seed"
    runs = [f"{entry['seed']}/{entry['fold']}" if folds and seeds else str(entry["fold" if folds else "seed"])
            for entry in kept]
    return f"text kept per {label}: " + ", ".join(f"{run} {name}" for run, name in zip(runs, names))


def skipped_reason(runs: list[Run]) -> str | None:
    """Why these runs trained nothing (the first skipped run's reason); None when every run trained."""
    summaries = (run_summary(path) for run in runs for path in run_files(run))
    return next((reason for summary in summaries if (reason := summary.get("skipped"))), None)


def evaluate_predictions(
    prediction_files: list[Run], task: str, model: str, resamples: int, level: float, seed: int,
    reference_files: list[Run] | None = None, reference_model: str | None = None,
) -> dict:
    """Test-set metrics of one model over its seeds (one run each), with bootstrap confidence intervals.

    With cross-validation folds, each seed's run is its fold files and the metrics are those of the pooled
    out-of-fold predictions.

    With ``reference_files`` (the predictions of a baseline), also the paired-bootstrap difference of
    AUROC and AUPRC against it. A skipped model has its reason (``skipped``) and no metrics; against a skipped
    reference there is no difference, only the reference's reason. ``text``: the text models' counts of stays
    with text; ``inputs``: what a model read when some of its text kinds were missing; ``text_kept``: the text
    kinds each run of a staged fusion model kept (none: it predicts as its GRU).
    """
    result = {"task": task, "model": model, "seeds": len(prediction_files),
              "folds": len(run_files(prediction_files[0]))}
    first = run_summary(prediction_files[0])
    text = first.get("text")
    if first.get("inputs"):
        result["inputs"] = first["inputs"]
    if (reason := skipped_reason(prediction_files)) is not None:
        return result | {"skipped": reason} | ({"text": text} if text else {})
    if (reason := first.get("not_applicable")) is not None:  # e.g. a notes-only model on a dataset without notes
        return result | {"not_applicable": reason}
    if (kept := text_kept(prediction_files)) is not None:
        result["text_kept"] = kept
    y, probabilities, stays = test_split(prediction_files)
    indices = bootstrap_indices(len(y), resamples, seed)
    result |= {
        "test_stays": int(len(y)),
        "positives": int(y.sum()),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
        "confidence_level": level,
        "bootstrap_resamples": resamples,
        "metrics": bootstrap(y, probabilities, indices, level),
    }
    if text:
        result["text"] = text
    if reference_files:
        if (reference_reason := skipped_reason(reference_files)) is not None:
            result["versus_reference"] = {"model": reference_model, "skipped": reference_reason}
        else:
            _, reference, _ = test_split(reference_files, stays)
            result["versus_reference"] = {
                "model": reference_model, "metrics": paired_difference(y, probabilities, reference, indices, level),
            }
    return result


def _number(value: float | None, scale: float, digits: int) -> str:
    """A metric for the table; n/a where it is undefined (e.g. a test split with a single class)."""
    return "n/a" if value is None or value != value else f"{scale * value:.{digits}f}"


def _cell(metric: dict, scale: float = 100.0, digits: int = 2) -> str:
    value, low, high = (_number(metric[k], scale, digits) for k in ("value", "ci_low", "ci_high"))
    return f"{value} [{low}, {high}]"


COMPARISON_SCHEMA = {
    "task": pl.String, "model": pl.String, "seeds": pl.Int64, "folds": pl.Int64, "skipped": pl.String,
    "inputs": pl.String, "text_kept": pl.String, "test_stays": pl.Int64, "positives": pl.Int64,
    "prevalence": pl.Float64, "cohort_stays": pl.Int64, "stays_with_note": pl.Int64, "stays_with_summary": pl.Int64,
    "stays_with_knowledge": pl.Int64,
} | {f"{name}{suffix}": pl.Float64 for name in METRICS for suffix in ("", "_ci_low", "_ci_high")}


def comparison_table(metric_files: list[str | Path]) -> pl.DataFrame:
    """One row per task and model with each metric's value and CI bounds (x100, as in the paper).

    ``skipped``: why a model was not trained (its metrics null); ``inputs``: what it read when some of its text
    kinds were missing. For text models, the cohort's stays and those
    with a note usable for the task and with a non-empty summary.
    """
    rows = []
    for path in metric_files:
        result = json.loads(Path(path).read_text())
        text = result.get("text") or {}
        row = {"task": result["task"], "model": result["model"], "seeds": result["seeds"],
               "folds": result.get("folds", 1), "skipped": result.get("skipped"),
               "inputs": result.get("inputs"), "text_kept": kept_text_note(result.get("text_kept")),
               "test_stays": result.get("test_stays"),
               "positives": result.get("positives"),
               "prevalence": result.get("prevalence"), "cohort_stays": text.get("stays"),
               "stays_with_note": text.get("notes", {}).get("stays"),
               "stays_with_summary": text.get("summary", {}).get("stays"),
               "stays_with_knowledge": text.get("knowledge", {}).get("stays")}
        for name in METRICS:
            m = result.get("metrics", {}).get(name, {})
            row |= {name: m.get("value"), f"{name}_ci_low": m.get("ci_low"), f"{name}_ci_high": m.get("ci_high")}
        rows.append(row)
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA).sort("task", "model")


def evaluated_on(folds: int) -> str:
    """What the metrics were computed on: the fixed test split, or the pooled out-of-fold predictions."""
    if folds > 1:
        return f"the pooled out-of-fold predictions of {folds} patient-grouped folds (every cohort stay once)"
    return "the test split"


def _skipped_cells(reason: str, cells: int) -> list[str]:
    """A skipped model's metric cells: the reason in the first, a dash in the others."""
    return [f"skipped: {reason}"] + ["-"] * (cells - 1)


def single_class(test_stays: int | None, positives: int | None) -> str | None:
    """Why the ranking metrics are undefined: a test split with one class only; None when both are there.

    >>> single_class(5, 0)
    'n/a: 5 labelled test stays, none positive'
    >>> single_class(3, 3), single_class(40, 4) is None
    ('n/a: 3 labelled test stays, all positive', True)
    """
    if test_stays is None or positives is None or 0 < positives < test_stays:
        return None
    return f"n/a: {test_stays} labelled test stays, {'none' if positives == 0 else 'all'} positive"


def _share(stays: int, total: int) -> str:
    return f"{stays} of {total} ({100 * stays / total:.1f} %)" if total else f"{stays} of 0"


def _text_lines(table: pl.DataFrame) -> list[str]:
    """Per task, how many of the cohort's stays have text: what the text models' results rest on."""
    counted = table.filter(pl.col("cohort_stays").is_not_null()).unique("task", keep="first", maintain_order=True)
    return [
        f"Stays with text ({row['task']}): {_share(row['stays_with_note'], row['cohort_stays'])} with a note usable"
        f" for the task, {_share(row['stays_with_summary'], row['cohort_stays'])} with a non-empty summary,"
        f" {_share(row['stays_with_knowledge'] or 0, row['cohort_stays'])} with a knowledge text of findings."
        for row in counted.iter_rows(named=True)
    ]


def markdown_table(table: pl.DataFrame) -> str:
    """The comparison as Markdown: value [95% CI] x100; Brier unscaled; skipped models with their reason."""
    header = ["task", "model", "test stays", "prevalence"] + [LABELS[m] for m in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.iter_rows(named=True):
        notes = [note for note in (row["inputs"], row["text_kept"]) if note]
        cells = [row["task"], row["model"] + (f" ({'; '.join(notes)})" if notes else "")]
        if row["skipped"]:
            cells += ["-", "-"] + _skipped_cells(row["skipped"], len(METRICS))
        elif reason := single_class(row["test_stays"], row["positives"]):
            cells += [str(row["test_stays"]), _number(row["prevalence"], 100.0, 1) + "%", reason]
            cells += ["-"] * (len(METRICS) - 1)
        else:
            cells += [str(row["test_stays"]), _number(row["prevalence"], 100.0, 1) + "%"]
            for name in METRICS:
                m = {"value": row[name], "ci_low": row[f"{name}_ci_low"], "ci_high": row[f"{name}_ci_high"]}
                cells.append(_cell(m) if name not in ("brier", "ece") else _cell(m, 1.0, 4))
        lines.append("| " + " | ".join(cells) + " |")
    folds = table.get_column("folds").max() or 1
    note = (f"\nValues x100 with bootstrap confidence intervals on {evaluated_on(folds)}; Brier score and expected"
            " calibration error (ECE, 10 bins) unscaled. A text model is skipped where no training stay has the"
            " text it reads.\n")
    text = "".join(f"\n{line}\n" for line in _text_lines(table))
    return "\n".join(lines) + "\n" + note + text


PAPER_METRICS = ("auroc", "auprc", "min_p_se")


def paper_table(metric_files: list[str | Path], models: list[str], tasks: list[str]) -> pl.DataFrame:
    """The paper's layout: one row per model, for each task bootstrap mean and std of AUROC, AUPRC and
    min(+P, Se), and the paired difference in AUPRC against the reference model with its CI; ``{task}_skipped``
    says why a model was not trained."""
    results = {}
    for path in metric_files:
        result = json.loads(Path(path).read_text())
        results[(result["model"], result["task"])] = result
    rows = []
    for model in models:
        row = {"model": model}
        for task in tasks:
            result = results.get((model, task))
            if result is None:
                raise ValueError(f"no metrics for model {model!r} and task {task!r} among the metric files")
            row["folds"] = result.get("folds", 1)
            row[f"{task}_skipped"] = result.get("skipped")
            row[f"{task}_inputs"] = result.get("inputs")
            row[f"{task}_text_kept"] = kept_text_note(result.get("text_kept"))
            row[f"{task}_single_class"] = single_class(result.get("test_stays"), result.get("positives"))
            for name in PAPER_METRICS:
                m = result.get("metrics", {}).get(name, {})
                row |= {f"{task}_{name}_mean": m.get("bootstrap_mean"), f"{task}_{name}_std": m.get("bootstrap_std")}
            versus = result.get("versus_reference") or {"model": None}
            gap = versus.get("metrics", {}).get("auprc", {})
            row |= {
                f"{task}_reference": versus["model"],
                f"{task}_auprc_difference": gap.get("difference"),
                f"{task}_auprc_difference_ci_low": gap.get("ci_low"),
                f"{task}_auprc_difference_ci_high": gap.get("ci_high"),
            }
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _difference_cell(row: dict, task: str) -> str:
    value, low, high = (row[f"{task}_auprc_difference{suffix}"] for suffix in ("", "_ci_low", "_ci_high"))
    if value is None:
        return "-"
    beats = " **" if low is not None and low > 0 else ""
    return f"{100 * value:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{beats}"


def paper_markdown(table: pl.DataFrame, tasks: list[str], reference: str | None, level: float) -> str:
    """The paper-layout table as Markdown: mean +- std over bootstrap resamples, x100."""
    header = ["model"]
    for task in tasks:
        header += [f"{task} {LABELS[m]}" for m in PAPER_METRICS]
        if reference:
            header.append(f"{task} AUPRC vs {reference}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.iter_rows(named=True):
        cells = [row["model"]]
        for task in tasks:
            if row[f"{task}_skipped"]:
                cells += _skipped_cells(row[f"{task}_skipped"], len(PAPER_METRICS) + bool(reference))
                continue
            if row[f"{task}_single_class"]:
                cells += [row[f"{task}_single_class"]] + ["-"] * (len(PAPER_METRICS) - 1 + bool(reference))
                continue
            for name in PAPER_METRICS:
                mean, std = row[f"{task}_{name}_mean"], row[f"{task}_{name}_std"]
                cells.append(f"{_number(mean, 100.0, 2)} ± {_number(std, 100.0, 2)}")
            if reference:
                cells.append("reference" if row["model"] == reference else _difference_cell(row, task))
        lines.append("| " + " | ".join(cells) + " |")
    for row in table.iter_rows(named=True):
        lines += [f"\n{row['model']}, {task}: {note}." for task in tasks
                  for note in (row[f"{task}_inputs"], row[f"{task}_text_kept"]) if note]
    where = evaluated_on(table.get_column("folds").max() or 1)
    note = (f"\nOn {where}, x100: mean ± standard deviation over bootstrap resamples, as in the paper (each"
            " resample averages the seeds).")
    if reference:
        note += (f" 'AUPRC vs {reference}': difference in AUPRC from {reference} with its paired-bootstrap"
                 f" {100 * level:.0f}% interval; ** marks an interval above zero.")
    return "\n".join(lines) + "\n" + note + "\n"


def write_json(result: dict, path: str | Path) -> None:
    def clean(value):
        if isinstance(value, float) and np.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean(result), indent=2) + "\n")
