"""The on-disk knowledge-graph contract shared by every KG builder and by the retrieval stages.

A KG folder holds ``nodes.parquet`` (one row per node, sorted by ``index``) and ``edges.parquet``
(PrimeKG's ``kg.csv`` columns, both directions of every undirected relation).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

NODES_FILE = "nodes.parquet"
EDGES_FILE = "edges.parquet"

NODE_SCHEMA: dict[str, pl.DataType] = {
    "index": pl.Int64(),
    "id": pl.String(),
    "type": pl.String(),
    "name": pl.String(),
    "source": pl.String(),
    "definition": pl.String(),
    "description": pl.String(),
    "synonyms": pl.List(pl.String()),
}

EDGE_SCHEMA: dict[str, pl.DataType] = {
    "relation": pl.String(),
    "display_relation": pl.String(),
    "x_index": pl.Int64(),
    "x_id": pl.String(),
    "x_type": pl.String(),
    "x_name": pl.String(),
    "x_source": pl.String(),
    "y_index": pl.Int64(),
    "y_id": pl.String(),
    "y_type": pl.String(),
    "y_name": pl.String(),
    "y_source": pl.String(),
}

# How many edge rows validate_kg checks against the nodes; enough to catch a wrong join, cheap on 8M rows.
EDGE_SAMPLE_ROWS = 200_000


class KGError(ValueError):
    """A knowledge graph input or output breaks the contract; the message names the file and column/setting."""


def _check_columns(schema: pl.Schema | dict, expected: dict[str, pl.DataType], file: str) -> None:
    """Fail on a missing column or a wrong dtype, naming all offending columns at once."""
    missing = [name for name in expected if name not in schema]
    if missing:
        raise KGError(f"{file}: missing column(s) {missing}")
    wrong = [f"{name} is {schema[name]}, expected {dtype}" for name, dtype in expected.items() if schema[name] != dtype]
    if wrong:
        raise KGError(f"{file}: wrong dtype for column(s): {'; '.join(wrong)}")


def validate_kg(nodes: pl.DataFrame, edges: pl.LazyFrame | pl.DataFrame) -> None:
    """Check a KG against the contract so a broken graph fails at build time, not deep inside retrieval.

    Edges of a DataFrame are checked in full; a LazyFrame is checked on its first EDGE_SAMPLE_ROWS rows.
    """
    _check_columns(nodes.schema, NODE_SCHEMA, NODES_FILE)
    for column in ("index", "id", "type", "name", "source", "synonyms"):
        if nodes[column].null_count():
            raise KGError(f"{NODES_FILE}: column '{column}' has {nodes[column].null_count()} null value(s)")
    if nodes["index"].n_unique() != nodes.height:
        raise KGError(f"{NODES_FILE}: column 'index' is not unique")
    if not nodes["index"].is_sorted():
        raise KGError(f"{NODES_FILE}: rows are not sorted by column 'index'")
    if nodes["synonyms"].list.eval(pl.element().is_null().any()).explode().fill_null(False).any():
        raise KGError(f"{NODES_FILE}: column 'synonyms' contains null strings")

    lazy = edges.lazy()
    _check_columns(lazy.collect_schema(), EDGE_SCHEMA, EDGES_FILE)
    sample = lazy if isinstance(edges, pl.DataFrame) else lazy.head(EDGE_SAMPLE_ROWS)
    keys = nodes.lazy().select("index", "id")
    for side in ("x", "y"):
        ends = sample.select(pl.col(f"{side}_index").alias("index"), pl.col(f"{side}_id").alias("edge_id"))
        bad = ends.join(keys, on="index", how="left").filter(pl.col("id").is_null() | (pl.col("id") != pl.col("edge_id")))
        bad = bad.head(3).collect()
        if bad.height:
            raise KGError(
                f"{EDGES_FILE}: column '{side}_index'/'{side}_id' refers to node(s) missing from {NODES_FILE}, "
                f"e.g. {bad.select('index', 'edge_id').rows()}"
            )


def load_kg(folder: str | Path) -> tuple[pl.DataFrame, pl.LazyFrame]:
    """Read and validate a KG folder; edges stay lazy because real PrimeKG has ~8M rows."""
    folder = Path(folder)
    for file in (NODES_FILE, EDGES_FILE):
        if not (folder / file).exists():
            raise KGError(f"{folder / file}: file not found (build the KG first)")
    nodes = pl.read_parquet(folder / NODES_FILE)
    edges = pl.scan_parquet(folder / EDGES_FILE)
    validate_kg(nodes, edges)
    return nodes, edges


def write_nodes(nodes: pl.DataFrame, out_dir: Path) -> None:
    """Write nodes.parquet atomically (temp name, then rename) so a killed job never leaves half a KG."""
    tmp = out_dir / f".{NODES_FILE}.tmp"
    nodes.select(list(NODE_SCHEMA)).write_parquet(tmp)
    os.replace(tmp, out_dir / NODES_FILE)


def write_edges(edges: pl.LazyFrame | pl.DataFrame, out_dir: Path) -> None:
    """Write edges.parquet atomically, streaming a LazyFrame so 8M PrimeKG rows never sit in memory."""
    tmp = out_dir / f".{EDGES_FILE}.tmp"
    edges.lazy().select(list(EDGE_SCHEMA)).sink_parquet(tmp, engine="streaming")
    os.replace(tmp, out_dir / EDGES_FILE)
