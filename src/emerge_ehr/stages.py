"""One function per pipeline stage: read the stage's input files, call the pure logic, write its outputs.

The Snakemake scripts in ``workflow/scripts/`` only map the ``snakemake`` object onto these, so each
stage can also be run and tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.data import cohort as cohort_lib
from emerge_ehr.data import notes as notes_lib
from emerge_ehr.data import tables, timeseries
from emerge_ehr.data.streaming import write_parquet_in_parts
from emerge_ehr.data.variables import feature_names, load_variables
from emerge_ehr.model.classic import CLASSIC_MODELS, train_classic

log = logging.getLogger("emerge_ehr")


def _write_json(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_parquet_atomically(frame: pl.DataFrame | pl.LazyFrame, path: str | Path) -> None:
    """Write via a temporary name so that a killed job never leaves a plausible-looking partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if isinstance(frame, pl.LazyFrame):
        frame.sink_parquet(tmp)
    else:
        frame.write_parquet(tmp)
    tmp.replace(path)


def synthesize(
    out_dir: str | Path, layout: str, patients: int, seed: int, variables: str | Path, header_case: str = "as_released"
) -> None:
    from emerge_ehr.data.synthetic import generate

    started = time.perf_counter()
    generate(out_dir, layout=layout, n_patients=patients, seed=seed, variables_yaml=variables, header_case=header_case)
    log.info("synthetic %s database with %d patients (%s column names) written in %.1f s", layout, patients,
             header_case, time.perf_counter() - started)


def convert(root: str, layout: str, table: str, out: str | Path, notes_root: str | None = None,
            meds: dict | None = None) -> None:
    """One canonical table: from a MIMIC layout, or (layout ``meds``) from a MEDS dataset, where ``meds`` holds
    the dataset's ``variables`` map and ``note_codes`` (emerge_ehr.meds.reader)."""
    started = time.perf_counter()
    if layout == "meds":
        from emerge_ehr.meds import reader

        meds = meds or {}
        reader.convert(root, table, out, meds.get("variables"), meds.get("note_codes"))
    else:
        tables.convert(root, layout, table, out, notes_root)
    log.info("table %s converted in %.1f s", table, time.perf_counter() - started)


def _scan(path: str | Path) -> pl.LazyFrame:
    return pl.scan_parquet(path)


def events(
    chartevents: str, labevents: str | None, patients: str, admissions: str, icustays: str,
    variables: str, hours: int, settings: dict, out: str | Path,
) -> None:
    """Events of the variables in the first ``hours`` of every stay that could enter the cohort."""
    started = time.perf_counter()
    definitions = load_variables(variables)
    stays = cohort_lib.candidate_stays(
        cohort_lib.stays_with_age(_scan(icustays), _scan(admissions), _scan(patients)),
        cohort_lib.CohortSettings(**_cohort_kwargs(settings)),
    ).select("stay_id", "subject_id", "hadm_id", "intime")
    frame = timeseries.extract_events(
        _scan(chartevents), _scan(labevents) if labevents else None, stays, definitions, hours
    )
    write_parquet_atomically(frame, out)
    summary = pl.scan_parquet(out).select(pl.len().alias("rows"), pl.col("stay_id").n_unique().alias("stays")).collect()
    log.info("events: %d rows for %d stays in %.1f s", summary["rows"][0], summary["stays"][0], time.perf_counter() - started)


def _cohort_kwargs(settings: dict) -> dict:
    return settings | {"split_fractions": tuple(settings["split_fractions"])}


def cohort(
    patients: str, admissions: str, icustays: str, events_path: str, settings: dict, out: str | Path, meta_out: str | Path,
    labels: dict | None = None, hours: int = 48,
) -> None:
    """The cohort; ``labels`` (task -> MEDS label file or folder; `kind: meds`) replace the workflow's labels of the
    stays they cover, matched by subject and the task's prediction time (``hours``: the series window)."""
    stays_with_events = _scan(events_path).select("stay_id").unique()
    table, meta = cohort_lib.build_cohort(
        _scan(icustays), _scan(admissions), _scan(patients), stays_with_events,
        cohort_lib.CohortSettings(**_cohort_kwargs(settings)),
    )
    if labels:
        table, meta = _given_labels(table, meta, labels, hours, settings["readmission_definition"])
    if table.height == 0:
        raise tables.InputError("the cohort is empty: no ICU stay meets the inclusion criteria (see the cohort flow in the log)")
    write_parquet_atomically(table, out)
    _write_json(meta, meta_out)
    for step in meta["flow"]:
        log.info("cohort flow: %-40s %d", step["step"], step["stays"])
    log.info("cohort: %d stays, %d patients, positives %s", meta["stays"], meta["patients"], meta["positives"])


def _given_labels(table: pl.DataFrame, meta: dict, labels: dict, hours: int, definition: str) -> tuple[pl.DataFrame, dict]:
    from emerge_ehr.meds import reader

    meta["meds_labels"] = {}
    for task, path in labels.items():
        when = cohort_lib.prediction_time(task, hours, definition)
        table, report = reader.apply_labels(table, reader.read_labels(path), task, when)
        meta["meds_labels"][task] = {"path": str(path)} | report
        log.info("MEDS labels for %s (%s): %s", task, path, report)
        if report["changed"]:
            log.warning("MEDS labels for %s: %d of %d matched stays had another label in the workflow's own"
                        " definition (%d positive -> negative, %d negative -> positive, %d not at risk); the given"
                        " labels are used", task, report["changed"], report["matched"],
                        report["positive_to_negative"], report["negative_to_positive"],
                        report["not_at_risk_labelled"])
        if report["labels_outside_cohort"]:
            log.warning("MEDS labels for %s: %d of %d labels are for no cohort stay (other inclusion criteria, or"
                        " another prediction time) and are not used", task, report["labels_outside_cohort"],
                        report["rows"])
    meta["positives"] = {task: int(table.get_column(task).sum() or 0) for task in ("mortality", "readmission")}
    meta["not_at_risk"] = {task: table.get_column(task).null_count() for task in ("mortality", "readmission")}
    return table, meta


def fold_cohort(cohort_path: str, folds: int, fold: int, val_share: float, seed: int, out: str | Path) -> None:
    """The cohort with its split rewritten for one cross-validation fold (emerge_ehr.data.folds)."""
    from emerge_ehr.data.folds import assign_folds
    from emerge_ehr.data.folds import fold_cohort as rewrite_split

    cohort_table = pl.read_parquet(cohort_path)
    table = rewrite_split(cohort_table, assign_folds(cohort_table, folds, seed), fold, val_share, seed)
    write_parquet_atomically(table, out)
    counts = dict(table.group_by("split").agg(pl.len()).rows())
    positives = {task: dict(table.group_by("split").agg(pl.col(task).sum()).rows()) for task in ("mortality", "readmission")}
    log.info("fold %d of %d: stays per split %s; positives %s", fold, folds, counts, positives)


def build_timeseries(
    events_path: str, cohort_path: str, variables: str, hours: int,
    hourly_out: str | Path, features_out: str | Path, stats_out: str | Path,
) -> None:
    definitions = load_variables(variables)
    cohort_table = pl.read_parquet(cohort_path)
    events_in_cohort = _scan(events_path).join(cohort_table.lazy().select("stay_id"), on="stay_id", how="semi")
    hourly = timeseries.hourly_table(events_in_cohort, definitions).collect()
    stats = timeseries.observed_statistics(hourly, cohort_table, definitions)
    features = timeseries.build_features(hourly, cohort_table, definitions, hours, stats)
    write_parquet_atomically(hourly, hourly_out)
    tmp = Path(str(features_out) + ".partial.npy")
    np.save(tmp, features)
    tmp.replace(features_out)
    _write_json(
        {"feature_names": feature_names(definitions), "hours": hours, "shape": list(features.shape),
         "row_order": "cohort.parquet (stay_id ascending)", **stats},
        stats_out,
    )
    log.info("features: %s, %d charted stay-hours", features.shape, hourly.height)


STAYS_PER_PART = 10_000  # the notes stage matches and sorts this many stays' notes at a time


def stay_notes(notes_path: str, cohort_path: str, hours: int, readmission_definition: str, out: str | Path) -> None:
    """The notes of the cohort's stays; the log says how many source notes were dropped and why (no text)."""
    notes, cohort = _scan(notes_path), _scan(cohort_path)
    stay_ids = cohort.select("stay_id").sort("stay_id").collect().get_column("stay_id")
    # A share of the stays at a time, in stay order (so the file stays sorted): all of full MIMIC-IV's matched
    # notes, sorted at once, peaked at 7.7 GB (docs/PERFORMANCE.md, "Full MIMIC-IV").
    def part(start: int) -> pl.DataFrame:
        stays = cohort.filter(pl.col("stay_id").is_in(stay_ids.slice(start, STAYS_PER_PART).implode()))
        return notes_lib.stay_notes(notes, stays, hours, readmission_definition).collect(engine="streaming")

    write_parquet_in_parts((part(start) for start in range(0, max(len(stay_ids), 1), STAYS_PER_PART)), out)
    matched = _scan(out)
    fates = dict(notes_lib.note_fates(notes, cohort, matched).collect(engine="streaming").rows())
    log.info("notes: %d source notes: %s", sum(fates.values()), fates)
    counts = matched.select(
        pl.len(), pl.col("stay_id").n_unique(), pl.col("mortality").sum(), pl.col("readmission").sum(),
        (pl.col("hours_from_intime") < 0).sum(),
    ).collect().row(0)
    log.info(
        "notes: %d notes for %d stays (%d usable for mortality, %d for readmission; %d charted before ICU admission)",
        *counts,
    )


# The arrays of embeddings/{task}.npz a text model reads (EMERGE.forward's text arguments).
TEXT_INPUTS = ("notes", "notes_mask", "summary", "summary_mask", "knowledge", "knowledge_mask", "nodes", "nodes_mask")


def model_inputs(features_path: str, embeddings_path: str | None, n_stays: int) -> dict[str, np.ndarray]:
    """The arrays a model reads, rows in cohort order: the series and, for text models, the text tokens."""
    inputs = {"series": np.load(features_path).astype(np.float32, copy=False)}
    if embeddings_path:
        with np.load(embeddings_path) as text:
            inputs |= {name: text[name] for name in TEXT_INPUTS}
    for name, array in inputs.items():
        if array.shape[0] != n_stays:
            raise tables.InputError(f"{name} has {array.shape[0]} rows but the cohort has {n_stays} stays")
    return inputs


def text_presence_of(embeddings_path: str | None) -> dict[str, np.ndarray]:
    """Per stay, which text it has for the task; nothing for the models that read no text."""
    from emerge_ehr.model.text_coverage import text_presence

    if not embeddings_path:
        return {}
    with np.load(embeddings_path) as text:
        return text_presence(text)


def train(features_path: str, embeddings_path: str | None, cohort_path: str, task: str, settings: dict,
          out_dir: str | Path, threads: int) -> None:
    """Train one model, or skip a text model that no training stay has text for (its reason in summary.json).

    Text models also record how many of the cohort's stays have each kind of text (``text`` in summary.json),
    and, where no training stay had some of the kinds a model reads, what it read instead (``inputs``).
    """
    import torch

    from emerge_ehr.model.scarcity import subsample_training
    from emerge_ehr.model.text_coverage import missing_kinds, read_inputs, skip_reason, text_coverage
    from emerge_ehr.model.train import TrainSettings, skip_training
    from emerge_ehr.model.train import train as train_model

    torch.set_num_threads(max(1, threads))
    settings = dict(settings)
    fraction = settings.pop("train_fraction", 1.0)
    table = pl.read_parquet(cohort_path)
    labels = table.get_column(task).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    splits = subsample_training(table.get_column("split").to_numpy(), labels, fraction, settings["seed"])
    presence = text_presence_of(embeddings_path)
    coverage = text_coverage(presence) if presence else None
    if coverage:
        log.info("%s text: of %d stays, %d have a usable note, %d a non-empty summary, %d a knowledge text of findings,"
                 " %d a retrieved node", task, coverage["stays"], coverage["notes"]["stays"],
                 coverage["summary"]["stays"], coverage["knowledge"]["stays"], coverage["nodes"]["stays"])
    training = (splits == "train") & ~np.isnan(labels)
    reason = skip_reason(settings["model"], presence, training, task)
    if reason:
        summary = skip_training(TrainSettings(**settings), reason, int(training.sum()), out_dir)
        log.info("skipped %s for %s: %s", settings["model"], task, reason)
    elif settings["model"] in CLASSIC_MODELS:
        summary = train_classic(
            settings["model"], np.load(features_path), labels, splits,
            table.get_column("stay_id").to_numpy(), settings["seed"], out_dir,
        )
        log.info("fitted %s for %s on %d stays", settings["model"], task, summary["train_stays"])
    else:
        summary = train_model(
            model_inputs(features_path, embeddings_path, table.height), labels, splits,
            table.get_column("stay_id").to_numpy(), TrainSettings(**settings), out_dir,
            unavailable_kinds=missing_kinds(settings["model"], presence, training) if presence else (),
        )
        log.info("trained %s for %s: best epoch %d of %d on %s%s", settings["model"], task,
                 summary["best_epoch"], summary["epochs_run"], summary["device"],
                 f", text read: {'+'.join(summary['text_kept']) or 'none'}" if "text_kept" in summary else "")
    # the share of the training split this run saw (the data-scarcity experiment), beside the model's own facts
    extras = {"text": coverage} if coverage else {}
    if not reason and (inputs := read_inputs(settings["model"], presence, training)):
        extras["inputs"] = inputs
        log.info("%s for %s read %s", settings["model"], task, inputs)
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary | extras | {"train_fraction": fraction}, indent=2)
                                                + "\n")


def ablations(results: str, tasks: list[str], models: list[str], folds: int, seeds: list[int], resamples: int,
              level: float, seed: int, scarcity: dict[str, list[int]], out: str) -> None:
    """The paper's ablation claims that this run's models answer, as one Markdown table."""
    from emerge_ehr.evaluate.ablations import ablation_markdown, ablation_rows
    from emerge_ehr.evaluate.report import evaluated_on

    rows = ablation_rows(Path(results), tasks, models, folds, seeds, resamples, level, seed, scarcity)
    Path(out).write_text(ablation_markdown(rows, level, evaluated_on(folds)))
    log.info("ablations: %d comparisons", len(rows))


def evaluate(prediction_files: list, task: str, model: str, resamples: int, level: float, seed: int, out: str,
             reference_files: list | None = None, reference_model: str | None = None) -> None:
    """Metrics of one model over its seeds' runs (a predictions file each, or one per fold, pooled)."""
    from emerge_ehr.evaluate.report import evaluate_predictions, write_json

    result = evaluate_predictions(prediction_files, task, model, resamples, level, seed, reference_files,
                                  reference_model)
    write_json(result, out)
    if "skipped" in result:
        log.info("%s %s: skipped: %s", task, model, result["skipped"])
    else:
        log.info("%s %s: %s", task, model, {k: round(v["value"], 4) for k, v in result["metrics"].items()})


def oracle(reference_predictions: str, reference_model: str, truth_path: str, task: str, predictions_out: str,
           summary_out: str) -> None:
    """The oracle line of a synthetic dataset: the reference model's predictions plus the planted effects."""
    from emerge_ehr.evaluate.oracle import oracle_predictions
    from emerge_ehr.evaluate.report import run_summary

    reference = pl.read_parquet(reference_predictions)
    write_parquet_atomically(oracle_predictions(reference, pl.read_parquet(truth_path), task), predictions_out)
    base = run_summary(reference_predictions)  # a neural or a classic model's summary: only these keys are shared
    _write_json({"oracle_of": reference_model, "train_stays": base["train_stays"],
                 "train_fraction": base.get("train_fraction", 1.0)}, summary_out)
    log.info("oracle for %s: %s predictions with the planted note-only effects", task, reference_model)


def metrics_table(metric_files: list[str], models: list[str], tasks: list[str], reference: str | None, level: float,
                  markdown_out: str, csv_out: str, paper_markdown_out: str, paper_csv_out: str) -> None:
    """The long comparison table (every metric with its CI) and the paper-layout table."""
    from emerge_ehr.evaluate.report import comparison_table, markdown_table, paper_markdown, paper_table

    table = comparison_table(metric_files)
    table.write_csv(csv_out)
    Path(markdown_out).write_text(markdown_table(table))
    paper = paper_table(metric_files, models, tasks)
    paper.write_csv(paper_csv_out)
    Path(paper_markdown_out).write_text(paper_markdown(paper, tasks, reference, level))


def scarcity(runs: dict[str, dict[int, list[str]]], task: str, resamples: int, level: float, seed: int,
             csv_out: str, plot_out: str) -> None:
    from emerge_ehr.evaluate.report import curves_on
    from emerge_ehr.evaluate.scarcity import plot_scarcity, scarcity_table

    table = scarcity_table(runs, task, resamples, level, seed)
    table.write_csv(csv_out)
    plot_scarcity(table, task, curves_on([run for by_percent in runs.values() for seeds in by_percent.values()
                                          for run in seeds]), plot_out)
