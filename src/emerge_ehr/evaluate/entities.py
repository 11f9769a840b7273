"""Entity extraction scored against the synthetic generator's planted conditions, per method and combined.

Only entities that name one of the generator's conditions count (by its name, a note surface form or an
abbreviation's expansion): the generator has no ground truth for other findings. An entity counts as the
patient's when it is neither negated nor about a relative.
"""

from __future__ import annotations

import polars as pl

from emerge_ehr.data.synthetic import CONDITIONS
from emerge_ehr.text.lexicon import normalise


def condition_keys(abbreviations: dict[str, str]) -> dict[str, str]:
    """Normalised entity text -> generator condition."""
    keys = {}
    for condition in CONDITIONS:
        for form in (condition.name, *condition.forms):
            keys[normalise(form)] = condition.name
            expansion = abbreviations.get(form) or abbreviations.get(form.lower())
            if expansion:
                keys[normalise(expansion)] = condition.name
    return keys


def extraction_quality(entities: pl.DataFrame, truth: pl.DataFrame, stays: pl.Series, keys: dict[str, str]) -> list[dict]:
    """Precision and recall of planted conditions per method and for the union, over ``stays``."""
    own = (
        entities.filter(~pl.col("negated") & ~pl.col("family") & pl.col("stay_id").is_in(stays.implode()))
        .with_columns(pl.col("entity").replace_strict(keys, default=None).alias("condition"))
        .drop_nulls("condition")
    )
    planted = (
        truth.filter(pl.col("stay_id").is_in(stays.implode())).select("stay_id", pl.col("conditions").alias("condition"))
        .explode("condition").drop_nulls("condition").unique()
    )
    mention_keys = (
        truth.filter(pl.col("stay_id").is_in(stays.implode())).select("stay_id", pl.col("mentions").alias("m"))
        .explode("m").drop_nulls("m")
        .with_columns(pl.col("m").map_elements(normalise, return_dtype=pl.String).replace_strict(keys, default=None).alias("condition"))
        .drop_nulls("condition").select("stay_id", "condition").unique()
    )
    mentioned = planted.join(mention_keys, on=["stay_id", "condition"], how="semi")
    rows = []
    methods = sorted(own.get_column("method").unique().to_list())
    for method in [*methods, "union"] if len(methods) > 1 else methods:
        found = (own if method == "union" else own.filter(pl.col("method") == method)).select("stay_id", "condition").unique()
        true_positives = found.join(planted, on=["stay_id", "condition"], how="semi").height
        rows.append({
            "method": method,
            "planted": planted.height,
            "extracted": found.height,
            "true_positives": true_positives,
            "precision": true_positives / found.height if found.height else None,
            "recall": true_positives / planted.height if planted.height else None,
            "mentioned": mentioned.height,
            "recall_of_mentioned": (
                found.join(mentioned, on=["stay_id", "condition"], how="semi").height / mentioned.height
                if mentioned.height else None
            ),
        })
    return rows


def quality_markdown(rows: list[dict]) -> str:
    lines = ["| method | planted conditions | extracted | correct | precision | recall | recall of conditions the notes"
             " mention |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {r['method']} | {r['planted']} | {r['extracted']} | {r['true_positives']} |"
                     f" {fmt(r['precision'])} | {fmt(r['recall'])} | {fmt(r['recall_of_mentioned'])} |")
    return "\n".join(lines) + "\n"
