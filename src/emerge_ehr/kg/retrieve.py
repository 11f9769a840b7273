"""Per stay and task: the matched knowledge-graph nodes, their definitions, and relations as triples.

Only entities from notes charted before the task's prediction time count; negated and family-history
mentions are left out. Triples are sampled per node with a seeded generator, so every stay that matches
a node gets the same triples and reruns give the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

CONTEXT_SCHEMA = {
    "task": pl.String,
    "stay_id": pl.Int64,
    "abnormal_features": pl.List(pl.String),
    "node_indices": pl.List(pl.Int64),
    "node_names": pl.List(pl.String),
    "definitions": pl.String,
    "triples": pl.String,
}


@dataclass(frozen=True)
class RetrieveSettings:
    max_nodes: int = 10
    max_triples: int = 5
    seed: int = 0


def stay_nodes(
    entities: pl.DataFrame, notes: pl.DataFrame, abnormal: pl.DataFrame, aligned: pl.DataFrame, task: str
) -> pl.DataFrame:
    """Accepted nodes of each stay with their mention counts: stay_id, node_index, count."""
    accepted = aligned.filter(pl.col("accepted")).select("entity", "source", "node_index")
    usable = notes.filter(pl.col(task)).select("stay_id", "note_id")
    from_notes = (
        entities.filter(~pl.col("negated") & ~pl.col("family"))
        .join(usable, on=["stay_id", "note_id"], how="semi")
        .with_columns(pl.lit("note").alias("source"))
        .join(accepted, on=["entity", "source"], how="inner")
        .select("stay_id", "node_index", pl.col("count").cast(pl.Int64))
    )
    from_abnormal = (
        abnormal.select("stay_id", pl.col("phrase").alias("entity"), pl.col("hours").cast(pl.Int64).alias("count"))
        .with_columns(pl.lit("abnormal").alias("source"))
        .join(accepted, on=["entity", "source"], how="inner")
        .select("stay_id", "node_index", "count")
    )
    return pl.concat([from_notes, from_abnormal]).group_by("stay_id", "node_index").agg(pl.col("count").sum())


def top_nodes(counts: pl.DataFrame, max_nodes: int) -> pl.DataFrame:
    """The most frequent nodes of each stay (ties by node index), with their rank."""
    return (
        counts.sort(["stay_id", "count", "node_index"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("stay_id").alias("rank"))
        .filter(pl.col("rank") <= max_nodes)
    )


def sample_triples(edges: pl.LazyFrame, node_indices: list[int], max_triples: int, seed: int) -> pl.DataFrame:
    """Up to ``max_triples`` relations per node with the node as head: node_index, triple text.

    >>> edges = pl.LazyFrame({"x_index": [1, 1, 1, 2], "x_name": ["Sepsis"] * 3 + ["Fever"],
    ...     "display_relation": ["phenotype present"] * 4, "y_name": ["Fever", "Hypotension", "Tachycardia", "x"]})
    >>> sample_triples(edges, [1], 2, seed=0).get_column("triple").to_list() == \\
    ...     sample_triples(edges, [1], 2, seed=0).get_column("triple").to_list()
    True
    >>> sample_triples(edges, [1], 2, seed=0).height
    2
    """
    heads = (
        edges.filter(pl.col("x_index").is_in(node_indices))
        .select(pl.col("x_index").alias("node_index"), "x_name", "display_relation", "y_name")
        .unique()
        .sort("node_index", "display_relation", "y_name")
        .collect()
    )
    chosen = []
    for (node,), group in heads.group_by(["node_index"], maintain_order=True):
        rng = np.random.default_rng([seed, int(node)])
        picks = np.sort(rng.choice(group.height, size=min(max_triples, group.height), replace=False))
        chosen.append(group[picks.tolist()])
    if not chosen:
        return pl.DataFrame(schema={"node_index": pl.Int64, "triple": pl.String})
    return pl.concat(chosen).select(
        "node_index", pl.format("({}, {}, {})", "x_name", "display_relation", "y_name").alias("triple")
    )


def _definition_line(name: pl.Expr, definition: pl.Expr, description: pl.Expr) -> pl.Expr:
    text = pl.concat_str([definition.fill_null(""), description.fill_null("")], separator=" ").str.strip_chars()
    return pl.when(text == "").then(name).otherwise(pl.format("{}: {}", name, text))


def build_context(
    entities: pl.DataFrame,
    notes: pl.DataFrame,
    abnormal: pl.DataFrame,
    aligned: pl.DataFrame,
    nodes: pl.DataFrame,
    edges: pl.LazyFrame,
    tasks: list[str],
    stays: pl.Series,
    settings: RetrieveSettings,
) -> pl.DataFrame:
    """The ``context`` contract: one row per task and stay (stays with nothing matched get empty fields)."""
    frames = []
    for task in tasks:
        ranked = top_nodes(stay_nodes(entities, notes, abnormal, aligned, task), settings.max_nodes)
        triples = sample_triples(edges, ranked.get_column("node_index").unique().to_list(), settings.max_triples, settings.seed)
        per_node = (
            nodes.select(
                pl.col("index").alias("node_index"), pl.col("name").alias("node_name"),
                _definition_line(pl.col("name"), pl.col("definition"), pl.col("description")).alias("definition_line"),
            )
            .join(triples.group_by("node_index").agg(pl.col("triple").str.join("\n").alias("triples")), on="node_index", how="left")
        )
        context = (
            ranked.join(per_node, on="node_index", how="left")
            .sort("stay_id", "rank")
            .group_by("stay_id", maintain_order=True)
            .agg(
                pl.col("node_index").alias("node_indices"),
                pl.col("node_name").alias("node_names"),
                pl.col("definition_line").str.join("\n").alias("definitions"),
                pl.col("triples").drop_nulls().str.join("\n").alias("triples"),
            )
        )
        features = abnormal.sort("stay_id", "variable", "direction").group_by("stay_id", maintain_order=True).agg(
            pl.col("phrase").alias("abnormal_features")
        )
        frames.append(
            pl.DataFrame({"stay_id": stays})
            .join(features, on="stay_id", how="left")
            .join(context, on="stay_id", how="left")
            .with_columns(
                pl.lit(task).alias("task"),
                pl.col("abnormal_features").fill_null([]),
                pl.col("node_indices").fill_null([]),
                pl.col("node_names").fill_null([]),
                pl.col("definitions").fill_null(""),
                pl.col("triples").fill_null(""),
            )
        )
    return pl.concat([f.select(list(CONTEXT_SCHEMA)).cast(CONTEXT_SCHEMA) for f in frames]).sort("task", "stay_id")
