"""A FAISS index over the names (and synonyms) of the knowledge graph's nodes, built once per KG and encoder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.settings import settings as _settings

INDEX_KINDS = ("flat", "hnsw")
ENTRY_SCHEMA = {"entry": pl.Int64, "node_index": pl.Int64, "text": pl.String, "is_synonym": pl.Boolean}


@dataclass(frozen=True)
class IndexSettings:
    node_types: tuple[str, ...]
    include_synonyms: bool
    kind: str  # flat: exact inner product; hnsw: approximate, for very large graphs
    hnsw_neighbours: int

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index.kind must be one of {INDEX_KINDS}, not {self.kind!r}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "IndexSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["kg_index"], "kg_index", **values)


def index_entries(nodes: pl.DataFrame, settings: IndexSettings) -> pl.DataFrame:
    """The strings to index: each node's name and, optionally, its synonyms; one row per (node, text).

    >>> nodes = pl.DataFrame({"index": [0, 1, 2], "type": ["disease", "gene/protein", "effect/phenotype"],
    ...     "name": ["Heart failure", "NAT2", "Fever"], "synonyms": [["Cardiac failure", "heart failure"], [], []]})
    >>> settings = IndexSettings(("disease", "effect/phenotype"), include_synonyms=True, kind="flat", hnsw_neighbours=32)
    >>> index_entries(nodes, settings).select("node_index", "text", "is_synonym").rows()
    [(0, 'Heart failure', False), (2, 'Fever', False), (0, 'Cardiac failure', True)]
    """
    selected = nodes.filter(pl.col("type").is_in(list(settings.node_types)))
    names = selected.select(pl.col("index").alias("node_index"), pl.col("name").alias("text"), pl.lit(False).alias("is_synonym"))
    frames = [names]
    if settings.include_synonyms:
        frames.append(
            selected.select(pl.col("index").alias("node_index"), pl.col("synonyms").alias("text"))
            .explode("text")
            .drop_nulls("text")
            .with_columns(pl.lit(True).alias("is_synonym"))
        )
    entries = (
        pl.concat(frames)
        .filter(pl.col("text").str.strip_chars() != "")
        .with_columns(pl.col("text").str.to_lowercase().alias("_key"))
        .unique(["node_index", "_key"], keep="first", maintain_order=True)
        .drop("_key")
        .with_row_index("entry")
    )
    return entries.cast(ENTRY_SCHEMA).select(list(ENTRY_SCHEMA))


def build_index(vectors: np.ndarray, settings: IndexSettings):
    """An inner-product FAISS index over L2-normalised vectors (inner product = cosine similarity)."""
    import faiss

    dimension = vectors.shape[1]
    if settings.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, settings.hnsw_neighbours, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dimension)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save_index(index, entries: pl.DataFrame, settings: IndexSettings, encoder: dict, out_dir: str | Path) -> None:
    import faiss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(out / "index.faiss.partial"))
    (out / "index.faiss.partial").replace(out / "index.faiss")
    entries.write_parquet(out / "entries.parquet")
    info = {"encoder": encoder, "settings": asdict(settings), "entries": entries.height, "nodes": entries["node_index"].n_unique()}
    (out / "index.json").write_text(json.dumps(info, indent=2) + "\n")


def load_index(index_dir: str | Path):
    """The index, its entries table and its metadata (including the encoder it was built with)."""
    import faiss

    folder = Path(index_dir)
    index = faiss.read_index(str(folder / "index.faiss"))
    entries = pl.read_parquet(folder / "entries.parquet")
    info = json.loads((folder / "index.json").read_text())
    if index.ntotal != entries.height:
        raise ValueError(f"{folder}: index holds {index.ntotal} vectors but entries.parquet has {entries.height} rows")
    return index, entries, info


def search_nodes(index, entries: pl.DataFrame, queries: np.ndarray, k: int) -> pl.DataFrame:
    """Top-``k`` distinct nodes per query row: query, rank (1 = best), node_index, score (cosine).

    Several entries (a name and its synonyms) may point at one node; the node keeps its best score.
    """
    if len(queries) == 0:
        return pl.DataFrame(schema={"query": pl.Int64, "rank": pl.Int64, "node_index": pl.Int64, "score": pl.Float64})
    depth = min(index.ntotal, max(k * 4, k + 8))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
    node_of_entry = entries.get_column("node_index").to_numpy()
    hits = pl.DataFrame({
        "query": np.repeat(np.arange(len(queries)), depth),
        "entry": ids.reshape(-1),
        "score": scores.reshape(-1).astype(np.float64),
    }).filter(pl.col("entry") >= 0)
    hits = hits.with_columns(pl.Series("node_index", node_of_entry[hits.get_column("entry").to_numpy()]))
    best = hits.group_by("query", "node_index").agg(pl.col("score").max())
    ranked = best.sort(["query", "score", "node_index"], descending=[False, True, False]).with_columns(
        pl.int_range(1, pl.len() + 1).over("query").alias("rank")
    )
    return ranked.filter(pl.col("rank") <= k).select("query", "rank", "node_index", "score")
