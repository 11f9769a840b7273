"""Abnormal time-series values as text entities ("heart rate too high"), as in EMERGE.

A value is abnormal when its z-score against the training split's distribution of that variable exceeds
the threshold in absolute value. Each stay gets at most one row per variable and direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from emerge_ehr.data.tables import InputError

ABNORMAL_SCHEMA = {
    "stay_id": pl.Int64,
    "variable": pl.String,
    "direction": pl.String,
    "z": pl.Float64,
    "hours": pl.Int32,
    "phrase": pl.String,
    "phenotype": pl.String,
}


@dataclass(frozen=True)
class AbnormalTerms:
    """Per variable: the words of its phrase and the curated phenotype name of each direction."""

    phrases: dict[str, str]
    phenotypes: dict[tuple[str, str], str]


def load_abnormal_terms(path: str | Path) -> AbnormalTerms:
    try:
        entries = yaml.safe_load(Path(path).read_text())["variables"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read abnormal-feature terms ({err})") from err
    phrases, phenotypes = {}, {}
    for variable, entry in entries.items():
        if "phrase" not in entry:
            raise InputError(f"{path}: variable {variable} has no 'phrase'")
        phrases[variable] = entry["phrase"]
        phenotypes |= {(variable, d): entry[d] for d in ("high", "low") if entry.get(d)}
    return AbnormalTerms(phrases, phenotypes)


def training_distribution(events: pl.LazyFrame, cohort: pl.LazyFrame) -> pl.LazyFrame:
    """Mean and standard deviation of each variable's charted values in the training split.

    Computed over each variable's values in sorted order: a parallel aggregation sums floats in an order that
    changes from run to run, and the last bits of the z-scores with it."""
    train = cohort.filter(pl.col("split") == "train").select("stay_id")
    values = events.join(train, on="stay_id", how="semi").select("variable", "value").sort("variable", "value")
    rows = []
    for group in values.collect().partition_by("variable", maintain_order=True):
        sorted_values = group.get_column("value").to_numpy()
        std = float(np.std(sorted_values, ddof=1)) if sorted_values.size > 1 else float("nan")
        rows.append((group.item(0, "variable"), float(np.mean(sorted_values)), std))
    schema = {"variable": pl.String, "mean": pl.Float64, "std": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row").lazy().filter(pl.col("std") > 0)


def abnormal_features(
    events: pl.LazyFrame, cohort: pl.LazyFrame, terms: AbnormalTerms, threshold: float = 2.0,
    distribution: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per stay, variable and direction with any abnormal value: the most extreme z and the hours.

    z-scores use ``distribution`` (variable, mean, std) where given, as in external validation, where they come
    from the dataset the model was developed on; else the cohort's own training split.

    >>> import polars as pl
    >>> ev = pl.LazyFrame({"stay_id": [1, 1, 1, 2, 2, 3], "hour": [0, 1, 2, 0, 1, 0],
    ...     "variable": ["heart_rate"] * 6, "value": [80.0, 82.0, 160.0, 78.0, 81.0, 79.0]})
    >>> co = pl.LazyFrame({"stay_id": [1, 2, 3], "split": ["train", "train", "test"]})
    >>> terms = AbnormalTerms({"heart_rate": "heart rate"}, {("heart_rate", "high"): "Tachycardia"})
    >>> abnormal_features(ev, co, terms, threshold=1.5).select("stay_id", "direction", "hours", "phrase",
    ...     "phenotype").collect().rows()
    [(1, 'high', 1, 'heart rate too high', 'Tachycardia')]
    """
    stats = training_distribution(events, cohort) if distribution is None else distribution
    phrases = pl.DataFrame({"variable": list(terms.phrases), "_words": list(terms.phrases.values())})
    curated = pl.DataFrame(
        [(v, d, name) for (v, d), name in terms.phenotypes.items()],
        schema={"variable": pl.String, "direction": pl.String, "phenotype": pl.String},
        orient="row",
    )
    z = (pl.col("value") - pl.col("mean")) / pl.col("std")
    return (
        events.join(cohort.select("stay_id"), on="stay_id", how="semi")
        .join(stats, on="variable", how="inner")
        .with_columns(z.alias("z"))
        .filter(pl.col("z").abs() > threshold)
        .with_columns(pl.when(pl.col("z") > 0).then(pl.lit("high")).otherwise(pl.lit("low")).alias("direction"))
        .group_by("stay_id", "variable", "direction")
        .agg(
            pl.col("z").abs().max().alias("_abs"),
            pl.col("z").sign().first().alias("_sign"),
            pl.col("hour").n_unique().alias("hours"),
        )
        .with_columns((pl.col("_abs") * pl.col("_sign")).alias("z"))
        .join(phrases.lazy(), on="variable", how="inner")
        .with_columns(pl.format("{} too {}", pl.col("_words"), pl.col("direction")).alias("phrase"))
        .join(curated.lazy(), on=["variable", "direction"], how="left")
        .select(list(ABNORMAL_SCHEMA))
        .cast(ABNORMAL_SCHEMA)
        .sort("stay_id", "variable", "direction")
    )
