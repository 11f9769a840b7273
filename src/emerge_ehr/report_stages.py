"""Stage functions of the reporting a clinical-ML reviewer asks for (TRIPOD+AI): subgroup metrics, decision
curves, per-stay explanations and their case studies, external validation and the model card. The same layer as
``stages``: each adapts files to the pure functions of ``emerge_ehr.evaluate``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.stages import model_inputs, text_presence_of, write_parquet_atomically

log = logging.getLogger("emerge_ehr")


def subgroups(runs: dict[str, list], cohort_path: str, task: str, settings: dict, resamples: int, level: float,
              seed: int, folds: int, plotted: list[str], csv_out: str, markdown_out: str, plot_out: str) -> None:
    """Each trained model's metrics in the cohort's subgroups (sex, age band, race, insurance), and a forest plot
    of the ``plotted`` models' AUROC by group."""
    from emerge_ehr.evaluate.report import evaluated_on, skipped_reason, test_split
    from emerge_ehr.evaluate.subgroups import plot_subgroups, subgroup_columns, subgroup_markdown, subgroup_metrics

    attributes = settings["attributes"]
    groups = subgroup_columns(pl.scan_parquet(cohort_path), settings["age_bands"]).collect()
    tables = []
    for model, model_runs in runs.items():
        if skipped_reason(model_runs) is not None:
            continue
        y, probabilities, stays = test_split(model_runs)
        by_stay = pl.DataFrame({"stay_id": stays}).join(groups, on="stay_id", how="left", maintain_order="left")
        table = subgroup_metrics(y, probabilities, {name: by_stay.get_column(name).to_numpy() for name in attributes},
                                 resamples, level, seed, settings["min_stays"])
        tables.append(table.select(pl.lit(model).alias("model"), pl.all()))
        log.info("subgroups %s %s: %d groups", task, model, table.height)
    table = pl.concat(tables) if tables else pl.DataFrame(schema={"model": pl.String})
    table.write_csv(csv_out)
    Path(markdown_out).write_text(subgroup_markdown(table, task, level, evaluated_on(folds)) if tables else
                                  f"# Subgroups: {task}\n\nNo model was trained for {task}.\n")
    trained = table.get_column("model").unique().to_list() if tables else []
    plot_subgroups(table, [model for model in plotted if model in trained] or trained[:1], task, plot_out)


def decision_curves(runs: dict[str, list], task: str, csv_out: str, plot_out: str) -> None:
    """Net benefit of every trained model against treating all and none (seed-averaged test risks)."""
    from emerge_ehr.evaluate.decision import NET_BENEFIT_SCHEMA, net_benefit, plot_decision_curves
    from emerge_ehr.evaluate.plots import averaged_test_predictions
    from emerge_ehr.evaluate.report import curves_on, single_class, skipped_reason

    trained = {model: averaged_test_predictions(model_runs) for model, model_runs in runs.items()
               if skipped_reason(model_runs) is None}
    if not trained:
        raise ValueError(f"decision curves for {task}: every model was skipped (see metrics/{task}/*.json)")
    y = next(iter(trained.values()))[0]
    where = curves_on([run for model_runs in runs.values() for run in model_runs])
    if (reason := single_class(len(y), int(y.sum()))) is not None:  # no curve without both outcomes
        pl.DataFrame(schema=NET_BENEFIT_SCHEMA).write_csv(csv_out)
        plot_decision_curves(pl.DataFrame(schema=NET_BENEFIT_SCHEMA), task, f"{where}: {reason}", plot_out)
        log.info("decision curves %s: %s", task, reason)
        return
    table = net_benefit(y, {model: p for model, (_, p) in trained.items()})
    table.write_csv(csv_out)
    plot_decision_curves(table, task, where, plot_out)
    log.info("decision curves %s: %d models", task, len(trained))


def explain(parts: list[dict], task: str, steps: int, out: str) -> None:
    """Each test stay's explanation by the model that tested it (a fold's own, with folds): what each input added
    to its logit (emerge_ehr.evaluate.explain). A skipped model gets an empty table."""
    from emerge_ehr.evaluate.explain import EXPLANATION_SCHEMA, explain_rows, load_model

    frames = []
    for fold, part in enumerate(parts):
        if (reason := json.loads(Path(part["summary"]).read_text()).get("skipped")) is not None:
            log.info("explain %s: the model was not trained (%s)", task, reason)
            break
        cohort = pl.read_parquet(part["cohort"])
        labels = cohort.get_column(task)
        rows = np.flatnonzero((cohort.get_column("split") == "test").to_numpy() & labels.is_not_null().to_numpy())
        names = json.loads(Path(part["feature_stats"]).read_text())["feature_names"]
        explained = explain_rows(load_model(part["model"]), model_inputs(part["features"], part.get("embeddings"),
                                                                          cohort.height), rows, names, steps=steps)
        frames.append(pl.DataFrame({"stay_id": cohort.get_column("stay_id").to_numpy()[rows], "fold": fold,
                                    "label": labels.to_numpy()[rows].astype(np.int8)})
                      .hstack(explained).with_columns(probability=1.0 / (1.0 + (-pl.col("logit")).exp())))
        log.info("explain %s fold %d: %d test stays by %s", task, fold, len(rows), explained.get_column("method")[0])
    empty = pl.DataFrame(schema={"stay_id": pl.Int64, "fold": pl.Int32, "label": pl.Int8, **EXPLANATION_SCHEMA,
                                 "probability": pl.Float64})
    frame = pl.concat(frames).sort("stay_id") if len(frames) == len(parts) else empty
    write_parquet_atomically(frame.cast({"fold": pl.Int32}), out)


def explanation_report(explanations: dict[str, str], contexts: list[str], notes_path: str, task: str,
                       settings: dict, chunking: dict, out: str, plot_out: str) -> None:
    """The case studies of each explained model: the highest-risk test stays and a random sample, and a plot of
    what moved each one's logit."""
    from emerge_ehr.evaluate.cases import cases_markdown, pick_cases, plot_cases
    from emerge_ehr.text.embed import note_chunks

    lines = [f"# Explanations: {task}", "",
             f"For each model, the {settings['cases']} test stays of highest risk and {settings['cases']} drawn at "
             "random, with what moved each one's logit away from zero (positive: toward the outcome). Note text is "
             + ("shown (explain.show_note_text)." if settings["show_note_text"] else
                "not shown (set explain.show_note_text to include it)."), ""]
    picked = {}
    for model, path in explanations.items():
        explained = pl.read_parquet(path)
        if explained.is_empty():
            lines += [f"## {model}", "", "Not trained for this task (see the metrics table for the reason).", ""]
            continue
        cases = picked[model] = pick_cases(explained, settings["cases"], settings["seed"])
        contexts_of = {}
        for fold, context_path in enumerate(contexts):
            stays = cases.filter(pl.col("fold") == fold).get_column("stay_id").to_list()
            context = pl.read_parquet(context_path).filter((pl.col("task") == task) & pl.col("stay_id").is_in(stays))
            contexts_of |= {row["stay_id"]: row for row in context.iter_rows(named=True)}
        chunks = None
        if settings["show_note_text"]:
            notes = pl.read_parquet(notes_path, columns=["stay_id", "note_id", "charttime", "text", task]).filter(
                pl.col("stay_id").is_in(cases.get_column("stay_id").to_list()))
            table = note_chunks(notes, task, chunking["chunk_words"], chunking["max_chunks"])
            chunks = {stay: group.sort("slot").get_column("text").to_list()
                      for (stay,), group in table.group_by("stay_id")}
        reads = [kind for kind in ("notes", "summary", "knowledge", "nodes")
                 if explained.get_column(kind).null_count() < explained.height]
        lines += cases_markdown(model, cases, contexts_of, chunks, reads, explained.get_column("method")[0])
    Path(out).write_text("\n".join(lines) + "\n")
    plot_cases(picked, task, plot_out)


def model_card(dataset: str, settings: dict, cohort_meta_path: str, cohort_path: str, hourly_path: str,
               metric_files: list[str], subgroup_files: dict[str, str], decision_files: dict[str, str],
               external_files: list[str], out: str) -> None:
    """The dataset's model card (emerge_ehr.evaluate.model_card), from the run's own outputs."""
    from emerge_ehr.evaluate.model_card import model_card as card
    from emerge_ehr.evaluate.model_card import read_metrics

    text = card(dataset, settings, json.loads(Path(cohort_meta_path).read_text()), pl.read_parquet(cohort_path),
                pl.read_parquet(hourly_path), read_metrics(metric_files),
                {task: pl.read_csv(path) for task, path in subgroup_files.items()},
                {task: pl.read_csv(path) for task, path in decision_files.items()},
                [Path(path).read_text() for path in external_files])
    Path(out).write_text(text)
    log.info("model card for %s: %d lines", dataset, text.count("\n"))


def external_cohort(cohort_path: str, out: str) -> None:
    """The test dataset's cohort with every stay a test stay: the model developed elsewhere trained on none."""
    write_parquet_atomically(pl.read_parquet(cohort_path).with_columns(split=pl.lit("test")), out)


def external_timeseries(hourly_path: str, cohort_path: str, variables: str, hours: int, source_stats_path: str,
                        features_out: str, stats_out: str) -> None:
    """The test dataset's model input, imputed and normalised with the development dataset's statistics."""
    from emerge_ehr.data.timeseries import build_features
    from emerge_ehr.data.variables import feature_names, load_variables
    from emerge_ehr.evaluate.external import lacking_variables, unseen_categories

    definitions = load_variables(variables)
    source = json.loads(Path(source_stats_path).read_text())
    if source["feature_names"] != feature_names(definitions):
        raise ValueError(f"{source_stats_path}: the development dataset's features differ from {variables}'s; "
                         "external validation needs the same variable definitions on both datasets")
    hourly, cohort = pl.read_parquet(hourly_path), pl.read_parquet(cohort_path)
    features = build_features(hourly, cohort, definitions, hours, source)
    tmp = Path(str(features_out) + ".partial.npy")
    np.save(tmp, features)
    tmp.replace(features_out)
    lacking, unseen = lacking_variables(hourly, definitions), unseen_categories(hourly, definitions)
    Path(stats_out).write_text(json.dumps(source | {"shape": list(features.shape), "external": {
        "statistics_of": source_stats_path, "lacking_variables": lacking, "unseen_categories": unseen}}, indent=2))
    log.info("external features: %s; variables never recorded: %s", features.shape, ", ".join(lacking) or "none")


def external_predictions(model_path: str, summary_path: str, features_path: str, embeddings_path: str | None,
                         cohort_path: str, task: str, out_dir: str) -> None:
    """A model developed on another dataset, applied unchanged to every labelled stay of this one."""
    import torch

    from emerge_ehr.evaluate.explain import load_model, reads
    from emerge_ehr.model.classic import aggregates
    from emerge_ehr.model.text_coverage import unreadable_reason
    from emerge_ehr.model.train import PREDICTION_SCHEMA

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads(Path(summary_path).read_text())
    cohort = pl.read_parquet(cohort_path)
    labels = cohort.get_column(task)
    rows = np.flatnonzero(labels.is_not_null().to_numpy())
    probability = np.zeros(0)
    if "skipped" not in summary:
        inputs = model_inputs(features_path, embeddings_path, cohort.height)
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=False)
        if "sklearn_model" in checkpoint:
            probability = checkpoint["sklearn_model"].predict_proba(aggregates(inputs["series"][rows]))[:, 1]
        else:
            model = load_model(model_path)
            reason = unreadable_reason(getattr(model, "use_series", True), reads(model),
                                       {kind: has[rows] for kind, has in text_presence_of(embeddings_path).items()})
            if reason:
                summary, rows = summary | {"not_applicable": reason}, rows[:0]
                log.info("external %s: n/a: %s", task, reason)
            with torch.no_grad():
                logits = [model(**{name: torch.from_numpy(array[rows[start: start + 512]])
                                   for name, array in inputs.items()}).float()
                          for start in range(0, len(rows), 512)]
            probability = torch.sigmoid(torch.cat(logits)).numpy() if logits else np.zeros(0)
    else:
        rows = rows[:0]
    pl.DataFrame({"stay_id": cohort.get_column("stay_id").to_numpy()[rows], "split": ["test"] * len(rows),
                  "label": labels.to_numpy()[rows].astype(np.int8), "probability": probability.astype(np.float64)},
                 schema=PREDICTION_SCHEMA).write_parquet(out / "predictions.parquet")
    (out / "summary.json").write_text(json.dumps(summary | {"developed_on": str(Path(model_path).parent)}, indent=2)
                                      + "\n")
    log.info("external %s: %d stays predicted by %s", task, len(rows), Path(model_path).parent)


def external_table(source: str, target: str, tasks: list[str], models: list[str], external: dict[str, str],
                   internal: dict[str, str], development: dict[str, str], stats_path: str, level: float,
                   markdown_out: str, csv_out: str) -> None:
    """The external-validation table: each model on the test dataset as developed on the other, beside both
    datasets' internal results. The dicts map "task/model" to a metrics JSON."""
    from emerge_ehr.evaluate.external import external_markdown

    def read(paths: dict[str, str], key: str) -> dict | None:
        return json.loads(Path(paths[key]).read_text()) if key in paths else None

    rows = [{"task": task, "model": model, "external": read(external, f"{task}/{model}"),
             "internal": read(internal, f"{task}/{model}"), "development": read(development, f"{task}/{model}")}
            for task in tasks for model in models]
    found = json.loads(Path(stats_path).read_text())["external"]
    Path(markdown_out).write_text(external_markdown(source, target, rows, found["lacking_variables"],
                                                    found["unseen_categories"], level))
    flat = [{"task": row["task"], "model": row["model"]} | {
        f"{key}_{metric}{part}": (row[key] or {}).get("metrics", {}).get(metric, {}).get(name)
        for key in ("external", "internal", "development") for metric in ("auroc", "auprc")
        for part, name in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))} for row in rows]
    pl.DataFrame(flat).write_csv(csv_out)
