"""The model card of a dataset's run: what TRIPOD+AI (2024) asks a prediction-model report to state, generated
from the run's own outputs so that it cannot drift from them.

Sections: intended use, data and cohort flow, outcomes and prevalence, predictors and their missingness, the
evaluation design, discrimination and calibration with intervals, subgroups, clinical utility (decision curves),
external validation where configured, explanations, and the known limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from emerge_ehr.evaluate.decision import useful_range
from emerge_ehr.evaluate.report import single_class

PREDICTION_TIME = {
    "mortality": "{hours} h after ICU admission, from the first {hours} h of the stay and the notes charted by then",
    "readmission": "at ICU discharge (definition `icu`) or hospital discharge (`hospital`), from the first {hours} h "
                   "and the notes charted before the prediction time",
}
OUTCOME = {
    "mortality": "death in hospital during the admission of the ICU stay",
    "readmission": "under `icu`: a new ICU stay or death within {days:g} days of ICU discharge (deaths in the ICU are "
                   "not at risk); under `hospital`: a new admission within {days:g} days of hospital discharge",
}


def _percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}"


def flow_lines(cohort_meta: dict) -> list[str]:
    """The inclusion flow as a table, each step with the stays it keeps and drops.

    >>> flow_lines({"flow": [{"step": "all", "stays": 10}, {"step": "adults", "stays": 7}]})[2:]
    ['| all | 10 |  |', '| adults | 7 | 3 |']
    """
    lines = ["| step | stays kept | dropped |", "|---|---|---|"]
    previous = None
    for step in cohort_meta["flow"]:
        dropped = "" if previous is None else str(previous - step["stays"])
        lines.append(f"| {step['step']} | {step['stays']} | {dropped} |")
        previous = step["stays"]
    return lines


def outcome_lines(cohort: pl.DataFrame, tasks: list[str], folds: int) -> list[str]:
    """Labelled stays, positives and prevalence per task and split (with folds, of the whole cohort: every stay
    is a test stay once)."""
    lines = ["| task | split | labelled stays | positives | prevalence % | not at risk |", "|---|---|---|---|---|---|"]
    parts = ([(f"all ({folds} folds)", cohort)] if folds > 1 else
             sorted(((name, part) for (name,), part in cohort.group_by("split")), key=lambda pair: pair[0]))
    for task in tasks:
        for split, part in parts:
            labels = part.get_column(task)
            labelled = labels.drop_nulls()
            lines.append(f"| {task} | {split} | {labelled.len()} | {int(labelled.sum())} | "
                         f"{_percent(labelled.mean() if labelled.len() else None)} | {labels.null_count()} |")
    return lines


def missingness_lines(hourly: pl.DataFrame, stays: int, hours: int) -> list[str]:
    """Per variable: the share of stays with any value in the window, and of stay-hours with a value.

    >>> hourly = pl.DataFrame({"stay_id": [1, 1, 2], "hour": [0, 1, 0], "heart_rate": [80.0, None, 90.0]})
    >>> missingness_lines(hourly, stays=4, hours=2)[2]
    '| heart_rate | 50.0 | 25.0 |'
    """
    lines = ["| variable | stays with a value % | stay-hours with a value % |", "|---|---|---|"]
    for name in hourly.columns[2:]:
        observed = hourly.filter(pl.col(name).is_not_null())
        lines.append(f"| {name} | {_percent(observed.get_column('stay_id').n_unique() / stays)} | "
                     f"{_percent(observed.height / (stays * hours))} |")
    return lines


def _interval(metric: dict) -> str:
    """A metric x100 with its interval; n/a where it is undefined (NaN in JSON comes back as None or NaN).

    >>> _interval({"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}), _interval({"value": None})
    ('80.0 [70.0, 90.0]', 'n/a')
    """
    values = [metric.get(key) for key in ("value", "ci_low", "ci_high")]
    if any(value is None or value != value for value in values):
        return "n/a"
    return f"{values[0] * 100:.1f} [{values[1] * 100:.1f}, {values[2] * 100:.1f}]"


def performance_lines(metrics: list[dict]) -> list[str]:
    """Discrimination and calibration of every model and task, with intervals; a skipped model says why."""
    lines = ["| task | model | AUROC | AUPRC | Brier | ECE | stays (positives) |", "|---|---|---|---|---|---|---|"]
    for result in metrics:
        if "metrics" not in result:
            reason = result.get("skipped") or "not evaluated"
            lines.append(f"| {result['task']} | {result['model']} | {reason} | | | | |")
            continue
        if reason := single_class(result.get("test_stays"), result.get("positives")):
            lines.append(f"| {result['task']} | {result['model']} | {reason} | | | | {result['test_stays']} "
                         f"({result['positives']}) |")
            continue
        cells = [_interval(result["metrics"][name]) for name in ("auroc", "auprc", "brier", "ece")]
        lines.append(f"| {result['task']} | {result['model']} | " + " | ".join(cells)
                     + f" | {result['test_stays']} ({result['positives']}) |")
    return lines


def subgroup_lines(tables: dict[str, pl.DataFrame]) -> list[str]:
    """Per task and model: the groups scored, the lowest and highest group AUROC, and the groups too small."""
    lines = ["| task | model | groups scored | lowest AUROC (group) | highest AUROC (group) | not scored |",
             "|---|---|---|---|---|---|"]
    for task, table in tables.items():
        if table.is_empty():
            continue
        for model in table.get_column("model").unique(maintain_order=True):
            rows = table.filter(pl.col("model") == model)
            scored = rows.filter(pl.col("status") == "ok").sort("auroc")
            not_scored = rows.filter(pl.col("status") != "ok")
            names = ", ".join(f"{r['attribute']} {r['group']} ({r['stays']})" for r in not_scored.iter_rows(named=True))
            if scored.is_empty():
                lines.append(f"| {task} | {model} | 0 | | | {names or 'none'} |")
                continue
            low, high = scored.row(0, named=True), scored.row(-1, named=True)
            lines.append(
                f"| {task} | {model} | {scored.height} | {low['auroc'] * 100:.1f} [{low['auroc_ci_low'] * 100:.1f}, "
                f"{low['auroc_ci_high'] * 100:.1f}] ({low['attribute']} {low['group']}) | {high['auroc'] * 100:.1f} "
                f"({high['attribute']} {high['group']}) | {names or 'none'} |")
    return lines


def utility_lines(tables: dict[str, pl.DataFrame]) -> list[str]:
    """Per task and model, the thresholds at which acting on the model beats treating all and none."""
    lines = ["| task | model | lowest-highest threshold where it beats treat-all and treat-none |", "|---|---|---|"]
    for task, table in tables.items():
        if table.is_empty():
            lines.append(f"| {task} | all | n/a: the test stays have one outcome only |")
        for model in table.get_column("model").unique(maintain_order=True):
            if model not in ("all", "none"):
                lines.append(f"| {task} | {model} | {useful_range(table, model)} |")
    return lines


def limit_lines(kind: str, cohort: pl.DataFrame, metrics: list[dict]) -> list[str]:
    """The known limits of this run, those that follow from its data first."""
    limits = []
    if kind == "synthetic":
        limits.append("The data are synthetic (the built-in generator), not patients: the numbers measure the "
                      "workflow and the method, not clinical performance.")
    else:
        limits.append("MIMIC comes from one academic centre (Beth Israel Deaconess, Boston): performance elsewhere "
                      "is unknown until validated externally.")
    for column in ("race", "insurance"):
        if column not in cohort.columns or cohort.get_column(column).null_count() == cohort.height:
            limits.append(f"The source records no {column}: its subgroups cannot be assessed.")
    smallest = min((result["positives"] for result in metrics if "positives" in result), default=None)
    if smallest is not None and smallest < 100:
        limits.append(f"Few events: as few as {smallest} positive test stays, so intervals are wide and small "
                      "differences between models are not resolved.")
    limits += [
        "Retrospective evaluation only; no prospective or silent-mode deployment has been made.",
        "Entities, summaries and retrieval depend on the configured LLM, encoder and knowledge graph; a change "
        "of any of them is a new model and needs a new evaluation.",
        "For research. Not a medical device, not for decisions about individual patients.",
    ]
    return [f"- {limit}" for limit in limits]


def model_card(dataset: str, settings: dict, cohort_meta: dict, cohort: pl.DataFrame, hourly: pl.DataFrame,
               metrics: list[dict], subgroups: dict[str, pl.DataFrame], decisions: dict[str, pl.DataFrame],
               external: list[str]) -> str:
    """The card as Markdown. ``settings``: kind, tasks, models, folds, seeds, hours, readmission window, level and
    evaluated_on (how the test predictions were formed); ``external``: the external-validation tables (Markdown)
    that have this dataset as their test data."""
    hours, days = settings["hours"], settings["readmission_window_days"]
    design = (f"{settings['folds']} patient-grouped, outcome-stratified folds; every stay is predicted once by "
              "the model that did not train on it" if settings["folds"] > 1 else
              "a fixed patient-level split (train / validation / test): " +
              ", ".join(f"{name} {count}" for name, count in cohort_meta["splits"].items()))
    lines = [
        f"# Model card: {dataset}", "",
        "Generated by the workflow from this run's outputs; every number below is in `results/` beside it.", "",
        "## Intended use", "",
        "Research on retrieval-augmented multimodal prediction from ICU records (EMERGE): "
        + ", ".join(f"{task} ({OUTCOME[task].format(days=days)}), predicted "
                    f"{PREDICTION_TIME[task].format(hours=hours)}" for task in settings["tasks"]) + ".",
        "Not for clinical use.", "",
        "## Data", "",
        f"Source: `{settings['kind']}`. {cohort_meta['stays']} ICU stays of {cohort_meta['patients']} patients "
        f"(adults, one ICU stay in the admission, no transfer between care units, at least {cohort_meta['min_hours']:g} h "
        "in the ICU, chart data in the window). Readmission definition: "
        f"`{cohort_meta['readmission_definition']}`, {days:g} days.", "",
        *flow_lines(cohort_meta), "",
        "## Outcomes", "", *outcome_lines(cohort, settings["tasks"], settings["folds"]), "",
        "## Predictors and missingness", "",
        f"The hourly values of the 17 clinical variables over the first {hours} h (last value in each hour, "
        "forward-filled, then the training median or normal category), age and sex; the text models add the notes, "
        "the retrieved knowledge and, where configured, the LLM summary. Missingness before filling:", "",
        *missingness_lines(hourly, cohort.height, hours), "",
        "## Evaluation", "",
        f"Design: {design}. Training seeds: {settings['seeds']}. Metrics are computed on {settings['evaluated_on']}, "
        f"with {settings['level']:.0%} bootstrap intervals (x100). Models: {', '.join(settings['models'])}.", "",
        *performance_lines(metrics), "",
        "Calibration plots: `plots/{task}/calibration.png`; the comparison with the reference model: "
        "`metrics/paper_table.md`.", "",
        "## Subgroups", "",
        "Performance by sex, age band, race and ethnicity, and insurance (`metrics/subgroups/{task}.md` has every "
        "group with its intervals and calibration in the large):", "",
        *subgroup_lines(subgroups), "",
        "## Clinical utility", "",
        "Net benefit against treating every stay and none (`plots/{task}/decision_curve.png`):", "",
        *utility_lines(decisions), "",
    ]
    if external:  # each table's own heading becomes a subsection
        lines += ["## External validation", ""] + [table.replace("# External validation: ", "### ", 1)
                                                    for table in external]
    lines += ["## Explanations", "",
              "Per-stay contributions of each input and case studies: `explanations/{task}.md` (late fusion exactly, "
              "the other neural models by integrated gradients).", "",
              "## Known limits", "", *limit_lines(settings["kind"], cohort, metrics), ""]
    return "\n".join(lines)


def read_metrics(paths: list[str]) -> list[dict]:
    return [json.loads(Path(path).read_text()) for path in paths]
