"""Per stay and task: the matched knowledge-graph nodes, their definitions, and relations as triples.

Only entities from notes charted before the task's prediction time count; negated and family-history
mentions are left out. Each node's triples are ranked (``retrieve.triples: ranked``, see ``rank_triples``) or,
as in the paper's code, sampled with a generator seeded per node (``random``); either way reruns give the same
text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from emerge_ehr.settings import settings as _settings

CONTEXT_SCHEMA = {
    "task": pl.String,
    "stay_id": pl.Int64,
    "abnormal_features": pl.List(pl.String),
    "node_indices": pl.List(pl.Int64),
    "node_names": pl.List(pl.String),
    "definitions": pl.String,
    "triples": pl.String,
}


# Tail types that say something about a patient; genes, pathways, anatomy and the like rarely do.
CLINICAL_TYPES = ("disease", "effect/phenotype", "drug")
TRIPLE_ORDERS = ("ranked", "random")


@dataclass(frozen=True)
class RetrieveSettings:
    max_nodes: int
    max_triples: int
    triples: str  # ranked | random (the paper's code: a seeded sample per node)
    seed: int

    def __post_init__(self) -> None:
        if self.triples not in TRIPLE_ORDERS:
            raise ValueError(f"retrieve.triples must be one of {TRIPLE_ORDERS}, not {self.triples!r}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "RetrieveSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["retrieve"], "retrieve", **values)


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


def rank_triples(edges: pl.LazyFrame, ranked: pl.DataFrame, max_triples: int) -> pl.DataFrame:
    """Up to ``max_triples`` relations per stay and node (``ranked``: stay_id, node_index, rank), node as head,
    best first: stay_id, node_index, triple, position.

    The order, each key breaking the ties of the one before:
    1. relations to another of the stay's own matched nodes (written once, under the better-ranked end): they
       tie the patient's findings together;
    2. tails of a clinical type (``CLINICAL_TYPES``) before genes, pathways and anatomy;
    3. relations the head has few of before those it has many of: hypertension has a few parents but thousands
       of ``phenotype present`` links to rare syndromes, which is what random sampling mostly draws;
    4. tails with more edges first: the widely linked concepts are the common, well-described ones (sepsis,
       furosemide), the rarely linked ones are rare syndromes;
    5. the triple's text, so that the order is total and reruns give the same text.

    >>> edges = pl.LazyFrame({"x_index": [1, 1, 1, 2, 3, 3], "y_index": [2, 3, 9, 1, 1, 2],
    ...     "x_name": ["Sepsis", "Sepsis", "Sepsis", "Fever", "TNF", "TNF"], "display_relation": ["r"] * 6,
    ...     "relation": ["a", "b", "a", "a", "b", "c"],
    ...     "y_name": ["Fever", "TNF", "Rare syndrome", "Sepsis", "Sepsis", "Fever"],
    ...     "y_type": ["effect/phenotype", "gene/protein", "disease", "disease", "disease", "effect/phenotype"]})
    >>> ranked = pl.DataFrame({"stay_id": [7, 7], "node_index": [1, 2], "rank": [1, 2]})
    >>> rank_triples(edges, ranked, 2).select("node_index", "triple").rows()
    [(1, '(Sepsis, r, Fever)'), (1, '(Sepsis, r, Rare syndrome)')]
    """
    heads = ranked.get_column("node_index").unique().to_list()
    candidates = (
        edges.filter(pl.col("x_index").is_in(heads))
        .select(pl.col("x_index").alias("node_index"), pl.col("y_index").alias("tail_index"),
                pl.col("y_type").alias("tail_type"), "relation",
                pl.format("({}, {}, {})", "x_name", "display_relation", "y_name").alias("triple"))
        .unique()
        .collect()
    )
    tails = candidates.get_column("tail_index").unique().to_list()
    degrees = edges.filter(pl.col("x_index").is_in(tails)).group_by("x_index").agg(pl.len().alias("tail_degree"))
    keys = ["non_clinical", "relation_count", "tail_degree", "triple"]
    descending = [False, False, True, False]
    scored = candidates.join(degrees.collect(), left_on="tail_index", right_on="x_index", how="left").with_columns(
        pl.col("tail_type").is_in(list(CLINICAL_TYPES)).fill_null(False).not_().alias("non_clinical"),
        pl.len().over("node_index", "relation").alias("relation_count"),
        pl.col("tail_degree").fill_null(0),
    )
    matched = ranked.select("stay_id", "node_index", "rank")
    links = (
        scored.filter(pl.col("tail_index").is_in(heads))
        .join(matched, on="node_index")
        .join(matched.rename({"node_index": "tail_index", "rank": "tail_rank"}), on=["stay_id", "tail_index"])
        .filter(pl.col("rank") < pl.col("tail_rank"))
        .with_columns(pl.lit(0).alias("group"))
    )
    # Each node's best relations whatever the stay; enough spare ones that dropping the stay's own matched
    # nodes (they are links, above) still leaves max_triples.
    spare = int(matched.get_column("rank").max() or 0)
    general = (
        scored.sort(["node_index", *keys], descending=[False, *descending])
        .group_by("node_index", maintain_order=True).head(max_triples + spare)
        .join(matched, on="node_index")
        .join(matched.rename({"node_index": "tail_index"}), on=["stay_id", "tail_index"], how="anti")
        .with_columns(pl.lit(1).alias("group"))
    )
    columns = ["stay_id", "node_index", "group", *keys]
    return (
        pl.concat([links.select(columns), general.select(columns)])
        .sort(["stay_id", "node_index", "group", *keys], descending=[False, False, False, *descending])
        .group_by("stay_id", "node_index", maintain_order=True).head(max_triples)
        .with_columns(pl.int_range(pl.len()).over("stay_id", "node_index").alias("position"))
        .select("stay_id", "node_index", "triple", "position")
    )


def stay_triples(edges: pl.LazyFrame, ranked: pl.DataFrame, settings: RetrieveSettings) -> pl.DataFrame:
    """The triples of each stay's nodes in the configured order: stay_id, node_index, triple, position."""
    if settings.triples == "ranked":
        return rank_triples(edges, ranked, settings.max_triples)
    sampled = sample_triples(edges, ranked.get_column("node_index").unique().to_list(), settings.max_triples,
                             settings.seed)
    return ranked.select("stay_id", "node_index").join(
        sampled.with_columns(pl.int_range(pl.len()).over("node_index").alias("position")), on="node_index"
    )


def _definition_line(name: pl.Expr, definition: pl.Expr, description: pl.Expr) -> pl.Expr:
    """``name: definition description`` on one line (descriptions such as Mayo's symptom lists span several), so
    that the lines of ``definitions`` match ``node_names`` one to one."""
    text = pl.concat_str([definition.fill_null(""), description.fill_null("")], separator=" ")
    text = text.str.replace_all(r"\s+", " ").str.strip_chars()
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
        triples = (
            stay_triples(edges, ranked, settings)
            .join(ranked.select("stay_id", "node_index", "rank"), on=["stay_id", "node_index"])
            .sort("stay_id", "rank", "position")
            .group_by("stay_id", maintain_order=True)
            .agg(pl.col("triple").str.join("\n").alias("triples"))
        )
        per_node = nodes.select(
            pl.col("index").alias("node_index"), pl.col("name").alias("node_name"),
            _definition_line(pl.col("name"), pl.col("definition"), pl.col("description")).alias("definition_line"),
        )
        context = (
            ranked.join(per_node, on="node_index", how="left")
            .sort("stay_id", "rank")
            .group_by("stay_id", maintain_order=True)
            .agg(
                pl.col("node_index").alias("node_indices"),
                pl.col("node_name").alias("node_names"),
                pl.col("definition_line").str.join("\n").alias("definitions"),
            )
            .join(triples, on="stay_id", how="left")
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
