"""Performance in subgroups of the cohort (sex, age band, race and ethnicity, insurance), with bootstrap intervals.

A model that is good on average may fail one group; TRIPOD+AI asks for each group's discrimination and
calibration. fairlearn's ``MetricFrame`` splits the stays into groups; inside each group the metrics and their
percentile intervals come from ``metrics.bootstrap`` (the same resampling as the overall table), because
MetricFrame's own bootstrap rebuilds a pandas frame per resample: 135 s for one attribute of 3,000 stays and
1,000 resamples, against 2.5 s this way, with the same group values (bench/subgroups.py, docs/PERFORMANCE.md).
A group with fewer stays than ``min_stays``, or without both outcomes, is listed with its counts and the reason,
never dropped.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from emerge_ehr.data.cohort import with_descriptors
from emerge_ehr.evaluate.metrics import bootstrap, bootstrap_indices

ATTRIBUTES = ("sex", "age", "race", "insurance")
SUBGROUP_METRICS = ("auroc", "auprc", "brier", "ece")
UNKNOWN = "Unknown"


def race_group() -> pl.Expr:
    """MIMIC's free-text race (MIMIC-IV ``race``, MIMIC-III ``ETHNICITY``) in the five groups most papers report.

    >>> values = ["WHITE - RUSSIAN", "BLACK/CAPE VERDEAN", "HISPANIC/LATINO - DOMINICAN", "SOUTH AMERICAN",
    ...           "ASIAN - CHINESE", "AMERICAN INDIAN/ALASKA NATIVE", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER",
    ...           "UNKNOWN/NOT SPECIFIED", None]
    >>> pl.DataFrame({"race": values}, schema={"race": pl.String}).select(race_group()).to_series().to_list()
    ['White', 'Black', 'Hispanic/Latino', 'Hispanic/Latino', 'Asian', 'Other', 'Unknown', 'Unknown', 'Unknown', 'Unknown']
    """
    race = pl.col("race").str.to_uppercase().str.strip_chars()
    unknown = race.is_null() | race.str.contains(r"^(UNKNOWN|UNABLE|PATIENT DECLINED|DECLINED)") | (race == "")
    return (
        pl.when(unknown).then(pl.lit(UNKNOWN))
        .when(race.str.contains("HISPANIC|LATINO") | (race == "SOUTH AMERICAN")).then(pl.lit("Hispanic/Latino"))
        .when(race.str.starts_with("WHITE") | (race == "PORTUGUESE")).then(pl.lit("White"))
        .when(race.str.starts_with("BLACK")).then(pl.lit("Black"))
        .when(race.str.starts_with("ASIAN")).then(pl.lit("Asian"))
        .otherwise(pl.lit("Other"))
        .alias("race")
    )


def age_band(bounds: list[float]) -> pl.Expr:
    """Age at ICU admission in bands that start at each bound (the last one open).

    >>> pl.DataFrame({"age": [18.0, 44.9, 45.0, 91.0]}).select(age_band([18, 45, 65, 80])).to_series().to_list()
    ['18-44', '18-44', '45-64', '80+']
    """
    band = pl.when(pl.col("age") >= bounds[-1]).then(pl.lit(f"{bounds[-1]:g}+"))
    for lo, hi in reversed(list(zip(bounds, bounds[1:]))):
        band = band.when(pl.col("age") >= lo).then(pl.lit(f"{lo:g}-{hi - 1:g}"))
    return band.when(pl.col("age").is_not_null()).then(pl.lit(f"<{bounds[0]:g}")).otherwise(pl.lit(UNKNOWN)).alias("age")


def subgroup_columns(cohort: pl.LazyFrame, age_bounds: list[float]) -> pl.LazyFrame:
    """One row per stay: stay_id and its group under each attribute (missing values are their own group; a
    cohort without race or insurance columns has every stay in Unknown).

    >>> cohort = pl.LazyFrame({"stay_id": [1, 2], "sex": ["F", None], "age": [70.0, 30.0],
    ...     "race": ["ASIAN", None], "insurance": ["Medicare", None]})
    >>> subgroup_columns(cohort, [18, 45, 65, 80]).collect().rows()
    [(1, 'F', '65-79', 'Asian', 'Medicare'), (2, 'Unknown', '18-44', 'Unknown', 'Unknown')]
    """
    insurance = pl.col("insurance").str.strip_chars()
    return with_descriptors(cohort).select(
        "stay_id",
        pl.col("sex").fill_null(UNKNOWN),
        age_band(age_bounds),
        race_group(),
        pl.when(insurance.is_null() | (insurance == "")).then(pl.lit(UNKNOWN)).otherwise(insurance).alias("insurance"),
    )


def _group_status(y: np.ndarray, min_stays: int) -> str:
    if len(y) < min_stays:
        return f"too small: {len(y)} stays < {min_stays}"
    if y.min() == y.max():
        return "one outcome only: " + ("no positive" if y.max() == 0 else "no negative")
    return "ok"


def subgroup_metrics(
    y: np.ndarray, probabilities: list[np.ndarray], groups: dict[str, np.ndarray], resamples: int, level: float,
    seed: int, min_stays: int,
) -> pl.DataFrame:
    """One row per attribute and group: counts, observed and mean predicted risk, and each metric with its interval.

    ``probabilities`` holds one vector per training seed, aligned with ``y`` and with each ``groups`` array.
    """
    from fairlearn.metrics import MetricFrame

    matrix = np.vstack(probabilities)

    def summary(y_group: np.ndarray, rows: np.ndarray) -> dict:
        y_group = np.asarray(y_group, dtype=float)
        rows = np.asarray(rows, dtype=int)
        status = _group_status(y_group, min_stays)
        facts = {"stays": len(rows), "positives": int(y_group.sum()), "status": status,
                 "observed_risk": float(y_group.mean()), "predicted_risk": float(matrix[:, rows].mean())}
        if status != "ok":
            return facts
        indices = bootstrap_indices(len(rows), resamples, seed)
        return facts | {"metrics": bootstrap(y_group, list(matrix[:, rows]), indices, level, SUBGROUP_METRICS)}

    records = []
    for attribute, values in groups.items():
        frame = MetricFrame(metrics={"summary": summary}, y_true=np.asarray(y, dtype=float),
                            y_pred=np.arange(len(y)), sensitive_features={attribute: np.asarray(values)})
        for group, facts in frame.by_group["summary"].items():
            row = {"attribute": attribute, "group": str(group)} | {k: v for k, v in facts.items() if k != "metrics"}
            for name in SUBGROUP_METRICS:
                metric = facts.get("metrics", {}).get(name, {})
                row |= {name: metric.get("value"), f"{name}_ci_low": metric.get("ci_low"),
                        f"{name}_ci_high": metric.get("ci_high")}
            records.append(row)
    schema = {"attribute": pl.String, "group": pl.String, "stays": pl.Int64, "positives": pl.Int64,
              "status": pl.String, "observed_risk": pl.Float64, "predicted_risk": pl.Float64}
    schema |= {f"{name}{part}": pl.Float64 for name in SUBGROUP_METRICS for part in ("", "_ci_low", "_ci_high")}
    return pl.DataFrame(records, schema=schema)


def _interval(row: dict, name: str, scale: float) -> str:
    return f"{row[name] * scale:.1f} [{row[f'{name}_ci_low'] * scale:.1f}, {row[f'{name}_ci_high'] * scale:.1f}]"


def subgroup_markdown(table: pl.DataFrame, task: str, level: float, evaluated_on: str) -> str:
    """One Markdown table per model: each group's counts, risks and metrics (all in %)."""
    lines = [f"# Subgroups: {task}", "",
             f"{evaluated_on}; {level:.0%} bootstrap intervals within each group. Observed: the group's outcome "
             "rate; predicted: its mean predicted risk (calibration in the large); metrics in %. Groups too small "
             "or with one outcome are listed, not scored.", ""]
    for model in table.get_column("model").unique(maintain_order=True):
        lines += [f"## {model}", "", "| attribute | group | stays (positives) | observed / predicted risk % | AUROC "
                  "| AUPRC | Brier | ECE |", "|---|---|---|---|---|---|---|---|"]
        for row in table.filter(pl.col("model") == model).iter_rows(named=True):
            cells = [row["attribute"], row["group"], f"{row['stays']} ({row['positives']})",
                     f"{row['observed_risk'] * 100:.1f} / {row['predicted_risk'] * 100:.1f}"]
            if row["status"] == "ok":
                cells += [_interval(row, "auroc", 100), _interval(row, "auprc", 100), _interval(row, "brier", 100),
                          _interval(row, "ece", 100)]
            else:
                cells += [row["status"], "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_subgroups(table: pl.DataFrame, models: list[str], task: str, out: str) -> None:
    """A forest plot: each scored group's AUROC with its interval, one marker per model, the overall AUROC of
    the first model as a dotted line where an attribute is all one group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emerge_ehr.evaluate.plots import save_figure

    scored = table.filter(pl.col("model").is_in(models) & (pl.col("status") == "ok"))
    groups = scored.select("attribute", "group").unique(maintain_order=True).rows()
    figure, axes = plt.subplots(figsize=(7, 0.35 * max(len(groups), 4) + 1.2))
    offsets = np.linspace(-0.25, 0.25, max(len(models), 1)) if len(models) > 1 else [0.0]
    for offset, model in zip(offsets, models):
        rows = scored.filter(pl.col("model") == model)
        where = {key: i for i, key in enumerate(groups)}
        y = [where[(a, g)] + offset for a, g in rows.select("attribute", "group").rows()]
        value = rows.get_column("auroc").to_numpy() * 100
        low, high = rows.get_column("auroc_ci_low").to_numpy() * 100, rows.get_column("auroc_ci_high").to_numpy() * 100
        axes.errorbar(value, y, xerr=[value - low, high - value], fmt="o", ms=4, capsize=2, label=model)
    axes.set_yticks(range(len(groups)), [f"{a}: {g}" for a, g in groups], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("AUROC (x100) with 95 % interval")
    axes.set_title(f"{task}: AUROC by subgroup", fontsize=10)
    axes.legend(fontsize=7, loc="lower left")
    save_figure(figure, out)
