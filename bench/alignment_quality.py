"""Alignment accuracy on a labelled set, and the threshold that separates right matches from wrong ones.

Three kinds of queries against a knowledge graph's index (default: the built-in KG of the pipeline):
- held-out synonyms: ontology synonyms of sampled phenotype and disease nodes, searched in an index of the
  node names only (the synonym text is never in the index);
- clinical phrases and abbreviations from ``bench/alignment_set.yaml`` (entity strings as extractors write them);
- negatives: phrases that must not be accepted.
Prints top-1/top-5 accuracy and, per threshold, precision and recall of accepted matches; figures go to
docs/PERFORMANCE.md.

    .venv/bin/python bench/alignment_quality.py --kg resources/kg/builtin
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.kg.index import IndexSettings, build_index, index_entries, search_nodes  # noqa: E402
from emerge_ehr.text.encoder import EmbeddingCache, EncoderSettings, TextEncoder, embed_cached  # noqa: E402
from emerge_ehr.settings import schema_defaults  # noqa: E402

DEFAULTS = schema_defaults()


def held_out_synonyms(nodes: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Queries: one synonym of each of ``n`` sampled nodes that have one; the answer is that node."""
    with_synonym = nodes.filter(
        pl.col("type").is_in(["disease", "effect/phenotype"]) & (pl.col("synonyms").list.len() > 0)
    ).with_columns(pl.col("synonyms").list.first().alias("query"))
    with_synonym = with_synonym.filter(pl.col("query").str.to_lowercase() != pl.col("name").str.to_lowercase())
    sample = with_synonym.sample(n=min(n, with_synonym.height), seed=seed)
    return sample.select("query", pl.concat_list(pl.col("name").str.to_lowercase()).alias("accept"))


def labelled(path: Path, group: str) -> pl.DataFrame:
    items = yaml.safe_load(path.read_text())[group]
    return pl.DataFrame(
        {"query": [i["query"] for i in items], "accept": [[a.lower() for a in i["accept"]] for i in items]},
        schema={"query": pl.String, "accept": pl.List(pl.String)},
    )


def evaluate(queries: pl.DataFrame, vectors: np.ndarray, index, entries, nodes: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per query: best score, and whether the top-1 / any of the top-k names is acceptable."""
    names = nodes.select(pl.col("index").alias("node_index"), pl.col("name").str.to_lowercase().alias("name"))
    hits = search_nodes(index, entries, vectors, k).join(names, on="node_index")
    labels = queries.with_row_index("qid").select(pl.col("qid").cast(pl.Int64).alias("query"), "accept")
    hits = hits.join(labels, on="query")
    hits = hits.with_columns(pl.col("accept").list.contains(pl.col("name")).alias("ok"))
    return hits.group_by("query").agg(
        pl.col("score").filter(pl.col("rank") == 1).first().alias("score"),
        pl.col("ok").filter(pl.col("rank") == 1).first().alias("top1"),
        pl.col("ok").any().alias("topk"),
    ).sort("query")


def accept_rates(positives: pl.DataFrame, negatives: pl.DataFrame | None, threshold: float) -> tuple[float, float]:
    """Precision of accepted matches (wrong ones and accepted negatives count against) and recall of right ones."""
    accepted = positives.filter(pl.col("score") >= threshold)
    right = accepted.filter(pl.col("top1")).height
    wrong = accepted.height - right + (negatives.filter(pl.col("score") >= threshold).height if negatives is not None else 0)
    precision = right / (right + wrong) if right + wrong else float("nan")
    return precision, right / positives.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kg", type=Path, default=REPO / "resources" / "kg" / "builtin")
    parser.add_argument("--set", type=Path, default=REPO / "bench" / "alignment_set.yaml")
    parser.add_argument("--synonyms", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=REPO / "results" / "cache")
    parser.add_argument("--dtype", default="auto", help="the encoder's number format (text_encoder.dtype)")
    args = parser.parse_args()
    nodes = pl.read_parquet(args.kg / "nodes.parquet")
    encoder = TextEncoder(EncoderSettings.from_config(DEFAULTS, dtype=args.dtype))
    cache = EmbeddingCache(args.cache / f"embeddings-{encoder.identity}", encoder.dimension, writer="bench/alignment_quality")
    results = {}
    for label, include_synonyms in (("held-out synonyms (index of names only)", False), ("clinical phrases", True),
                                    ("abbreviations, unexpanded", True), ("negatives", True)):
        settings = IndexSettings.from_config(DEFAULTS, include_synonyms=include_synonyms)
        entries = index_entries(nodes, settings)
        vectors, _ = embed_cached(entries.get_column("text").to_list(), encoder, cache)
        index = build_index(vectors, settings)
        if label.startswith("held-out"):
            queries = held_out_synonyms(nodes, args.synonyms, args.seed)
        elif label == "negatives":
            items = yaml.safe_load(args.set.read_text())["negatives"]
            queries = pl.DataFrame({"query": items, "accept": [[] for _ in items]}, schema={"query": pl.String, "accept": pl.List(pl.String)})
        else:
            queries = labelled(args.set, "clinical" if label == "clinical phrases" else "abbreviations")
        started = time.perf_counter()
        query_vectors, _ = embed_cached(queries.get_column("query").to_list(), encoder, cache)
        results[label] = evaluate(queries, query_vectors, index, entries, nodes, 5)
        results[label + " time"] = time.perf_counter() - started
    print(f"KG: {args.kg} ({nodes.height:,} nodes); encoder {encoder.settings.model} in {encoder.dtype}\n")
    print("| query set | queries | top-1 accuracy | top-5 accuracy |\n|---|---|---|---|")
    for label in ("held-out synonyms (index of names only)", "clinical phrases", "abbreviations, unexpanded"):
        r = results[label]
        print(f"| {label} | {r.height} | {r['top1'].mean():.3f} | {r['topk'].mean():.3f} |")
    negatives = results["negatives"]
    print("\n| threshold | clinical: precision | clinical: recall | synonyms: precision | synonyms: recall |"
          " negatives accepted |\n|---|---|---|---|---|---|")
    best = (0.0, None)
    for threshold in np.arange(0.5, 0.96, 0.05):
        row = [f"{threshold:.2f}"]
        rejected_negatives = negatives.filter(pl.col("score") >= threshold).height
        for label in ("clinical phrases", "held-out synonyms (index of names only)"):
            precision, recall = accept_rates(results[label], negatives if label == "clinical phrases" else None, threshold)
            row += [f"{precision:.3f}", f"{recall:.3f}"]
            if label == "clinical phrases" and precision + recall > 0:
                best = max(best, (2 * precision * recall / (precision + recall), round(float(threshold), 2)))
        print("| " + " | ".join(row) + f" | {rejected_negatives}/{negatives.height} |")
    print(f"\nbest F1 on clinical phrases and negatives: {best[0]:.3f} at threshold {best[1]:.2f}")
    cache.close()


if __name__ == "__main__":
    main()
