"""Alignment of entity strings (from notes and abnormal features) to knowledge-graph nodes.

Abnormal features with a curated phenotype term are matched by name first; everything else by cosine
similarity between the entity's embedding and the embeddings of node names and synonyms. The best
candidate is accepted when its score reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from emerge_ehr.kg.index import search_nodes
from emerge_ehr.settings import settings as _settings

ALIGNED_SCHEMA = {
    "entity": pl.String,
    "source": pl.String,
    "node_index": pl.Int64,
    "node_name": pl.String,
    "node_type": pl.String,
    "score": pl.Float64,
    "accepted": pl.Boolean,
    "method": pl.String,
    "candidates": pl.List(pl.Int64),
    "candidate_scores": pl.List(pl.Float64),
}


@dataclass(frozen=True)
class AlignSettings:
    top_k: int
    threshold: float

    @classmethod
    def from_config(cls, config: dict, **values) -> "AlignSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["align"], "align", **values)


def curated_nodes(queries: pl.DataFrame, nodes: pl.DataFrame) -> pl.DataFrame:
    """Queries whose curated phenotype name is a node name (case-insensitive): entity, source, node_index.

    Phenotype nodes are preferred when several nodes share the name.
    """
    by_name = (
        nodes.with_columns(pl.col("name").str.to_lowercase().alias("_name"), (pl.col("type") != "effect/phenotype").alias("_rank"))
        .sort("_rank", "index")
        .unique("_name", keep="first", maintain_order=True)
        .select("_name", pl.col("index").alias("node_index"))
    )
    return (
        queries.filter(pl.col("phenotype").is_not_null())
        .with_columns(pl.col("phenotype").str.to_lowercase().alias("_name"))
        .join(by_name, on="_name", how="inner")
        .select("entity", "source", "node_index")
    )


def align(
    queries: pl.DataFrame,
    query_vectors: np.ndarray,
    index,
    entries: pl.DataFrame,
    nodes: pl.DataFrame,
    settings: AlignSettings,
) -> pl.DataFrame:
    """One row per query (entity, source): best node, its score, whether accepted, and the top-k candidates.

    ``queries`` has columns entity, source and phenotype (curated name or null), aligned with
    ``query_vectors`` row by row.
    """
    hits = search_nodes(index, entries, query_vectors, settings.top_k)
    candidates = hits.group_by("query").agg(
        pl.col("node_index").sort_by("rank").alias("candidates"),
        pl.col("score").sort_by("rank").alias("candidate_scores"),
    )
    best = hits.filter(pl.col("rank") == 1).select("query", "node_index", "score")
    curated = curated_nodes(queries, nodes).with_columns(pl.lit(1.0).alias("_curated_score"))
    node_info = nodes.select(pl.col("index").alias("node_index"), pl.col("name").alias("node_name"),
                             pl.col("type").alias("node_type"))
    table = (
        queries.with_row_index("query").with_columns(pl.col("query").cast(pl.Int64))
        .join(best, on="query", how="left")
        .join(candidates.with_columns(pl.col("query").cast(pl.Int64)), on="query", how="left")
        .join(curated.rename({"node_index": "_curated_node"}), on=["entity", "source"], how="left")
        .with_columns(
            pl.when(pl.col("_curated_node").is_not_null()).then(pl.lit("curated")).otherwise(pl.lit("embedding")).alias("method"),
            pl.coalesce("_curated_node", "node_index").alias("node_index"),
            pl.coalesce("_curated_score", "score").alias("score"),
        )
        .with_columns((pl.col("score") >= settings.threshold).fill_null(False).alias("accepted"))
        .join(node_info, on="node_index", how="left")
    )
    return table.select(list(ALIGNED_SCHEMA)).cast(ALIGNED_SCHEMA).sort("source", "entity")
