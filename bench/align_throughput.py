"""Throughput of the knowledge stages at PrimeKG scale: KG build, index build, and alignment.

Uses the built-in KG (76k nodes; its index holds about 102k names and synonyms, PrimeKG has about 129k
nodes). Alignment queries are 5,000 distinct entity-like strings made from node names, so none is cached.
Run after `make run` (it reuses the pipeline's KG and index when present):

    .venv/bin/python bench/align_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.kg.align import AlignSettings, align  # noqa: E402
from emerge_ehr.kg.builtin import build_builtin_kg  # noqa: E402
from emerge_ehr.kg.index import load_index  # noqa: E402
from emerge_ehr.text.encoder import EncoderSettings, TextEncoder  # noqa: E402
from emerge_ehr.settings import schema_defaults  # noqa: E402

DEFAULTS = schema_defaults()


def entity_like_queries(nodes: pl.DataFrame, n: int, seed: int) -> list[str]:
    """Lower-cased node names with one word dropped: close to, but not exactly, indexed strings."""
    rng = np.random.default_rng(seed)
    names = nodes.filter(pl.col("name").str.count_matches(" ") >= 2).get_column("name").sample(n * 2, seed=seed)
    queries = []
    for name in names:
        words = name.lower().split()
        del words[rng.integers(len(words))]
        queries.append(" ".join(words))
    return list(dict.fromkeys(queries))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kg", type=Path, default=REPO / "resources" / "kg" / "builtin")
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        build_builtin_kg(scratch)
        kg_seconds = time.perf_counter() - started
    index_dir = args.kg / "minilm"
    index, entries, info = load_index(index_dir)
    nodes = pl.read_parquet(args.kg / "nodes.parquet")
    encoder = TextEncoder(EncoderSettings.from_config(DEFAULTS))
    texts = entity_like_queries(nodes, args.queries, seed=0)
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    embed_seconds = time.perf_counter() - started
    queries = pl.DataFrame({"entity": texts, "source": ["note"] * len(texts), "phenotype": [None] * len(texts)},
                           schema={"entity": pl.String, "source": pl.String, "phenotype": pl.String})
    started = time.perf_counter()
    table = align(queries, vectors, index, entries, nodes, AlignSettings.from_config(DEFAULTS))
    search_seconds = time.perf_counter() - started
    print(f"built-in KG: {nodes.height:,} nodes; index: {entries.height:,} strings ({info['settings']['kind']})\n")
    print("| step | figure |\n|---|---|")
    print(f"| build the built-in KG (HPO, annotations, genes, ICD-10-CM, CCSR) | {kg_seconds:.1f} s |")
    print(f"| embed {len(texts):,} new entity strings | {len(texts) / embed_seconds:,.0f} strings/s |")
    print(f"| search + align them (top-5, {entries.height:,} indexed strings) | {len(texts) / search_seconds:,.0f} entities/s |")
    print(f"| end to end, uncached | {len(texts) / (embed_seconds + search_seconds):,.0f} entities/s |")
    print(f"\naccepted at the default threshold: {table.get_column('accepted').mean():.1%}")


if __name__ == "__main__":
    main()
