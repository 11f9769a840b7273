"""Does ranking the relation triples help? Ranked against random (the paper's code) on a finished synthetic run.

Retrieval writes up to ``retrieve.max_triples`` relations per matched node. The paper's code samples them at
random; ``retrieve.triples: ranked`` (the default) puts relations between the stay's own matched nodes first,
then clinical tails, rare relations and well-linked tails (``kg.retrieve.rank_triples``). This rebuilds one
fold's retrieval, knowledge texts and knowledge embeddings both ways, from the run's own entities, alignments
and abnormal values (nothing else changes), and compares:

- what the triples say: the share of stays with a triple linking two of their own matched nodes, and the share
  of triples whose tail is a disease, phenotype or drug;
- what the knowledge embedding carries: 5-fold cross-validated AUROC of a logistic probe for the outcome and
  for each condition that only the notes reveal (``NOTE_ONLY``), over the fold's labelled stays.

    .venv/bin/python bench/triple_order.py --dataset evidence [--fold 0] [--out triple_order.md]

Embeddings go through the workflow's cache (``cache_dir``), so a rerun embeds nothing again.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from emerge_ehr import knowledge  # noqa: E402
from emerge_ehr.data.synthetic import NOTE_ONLY  # noqa: E402
from emerge_ehr.kg.retrieve import CLINICAL_TYPES  # noqa: E402
from emerge_ehr.settings import complete  # noqa: E402
from emerge_ehr.text.encoder import EncoderSettings  # noqa: E402
from synthetic_signal import probe_auroc  # noqa: E402


def _settings() -> dict:
    """The retrieval, encoder and embedding settings of the default config (the evidence config keeps them)."""
    return complete(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


def triple_stats(context: pl.DataFrame, edges: pl.DataFrame) -> dict[str, float]:
    """Share of stays with a triple between two of their own nodes; share of triples with a clinical tail."""
    typed = edges.select(pl.format("({}, {}, {})", "x_name", "display_relation", "y_name").alias("triple"),
                         pl.col("y_type").is_in(list(CLINICAL_TYPES)).alias("clinical"),
                         "y_index").unique("triple")
    rows = (context.filter(pl.col("triples") != "")
            .select("stay_id", "node_indices", pl.col("triples").str.split("\n").alias("triple"))
            .explode("triple").join(typed, on="triple", how="left"))
    own = rows.filter(pl.col("node_indices").list.contains(pl.col("y_index")))
    stays = context.height
    return {"stays with a link between their own nodes": own.get_column("stay_id").n_unique() / max(stays, 1),
            "triples with a clinical tail": float(rows.get_column("clinical").fill_null(False).mean() or 0.0)}


def run(workdir: Path, dataset: str, fold: int, out_dir: Path) -> str:
    config = _settings()
    results = workdir / "results" / dataset
    fitted = results / "folds" / f"fold{fold}" if (results / "folds").exists() else results
    kg_dir = workdir / "resources" / "kg" / config["knowledge_graph"]["name"]
    encoder = asdict(EncoderSettings.from_config(config))
    cohort = pl.read_parquet(fitted / "cohort.parquet").with_row_index("row")
    truth = pl.read_parquet(workdir / "resources" / "synthetic" / dataset / "ground_truth.parquet")
    stays = cohort.join(truth.select("stay_id", "conditions"), on="stay_id", how="left")
    edges = pl.read_parquet(kg_dir / "edges.parquet", columns=["x_name", "display_relation", "y_name", "y_type",
                                                                 "y_index"])
    tasks = [t for t in ("mortality", "readmission") if (fitted / "embeddings" / f"{t}.npz").exists()]
    lines = [f"Fold {fold} of `results/{dataset}` ({cohort.height} stays), knowledge text embedded by "
             f"{encoder['model']}.\n"]
    table = {}
    for order in ("ranked", "random"):
        context_path, text_path = out_dir / f"context-{order}.parquet", out_dir / f"knowledge-{order}.parquet"
        knowledge.retrieve(str(results / "entities.parquet"), str(results / "notes.parquet"),
                           str(fitted / "abnormal.parquet"), str(fitted / "aligned.parquet"),
                           str(kg_dir / "nodes.parquet"), str(kg_dir / "edges.parquet"), str(fitted / "cohort.parquet"),
                           tasks, config["retrieve"] | {"triples": order}, str(context_path))
        knowledge.knowledge_texts(str(context_path), encoder["model"], str(text_path))
        context = pl.read_parquet(context_path)
        for task in tasks:
            npz = out_dir / f"{task}-{order}.npz"
            knowledge.embed(str(results / "notes.parquet"), None, str(text_path), str(context_path),
                            str(fitted / "cohort.parquet"), task, encoder, config["embed"]["chunk_words"],
                            config["embed"]["max_chunks"], config["retrieve"]["max_nodes"],
                            str(workdir / config["cache_dir"]), str(npz))
            labelled = stays.filter(pl.col(task).is_not_null())
            rows = labelled.get_column("row").to_numpy()
            with np.load(npz) as arrays:
                vectors = arrays["knowledge"][rows]
            cells = triple_stats(context.filter(pl.col("task") == task), edges)
            cells[f"probe: {task}"] = probe_auroc(vectors, labelled.get_column(task).to_numpy().astype(float))
            for condition in NOTE_ONLY:
                target = labelled.get_column("conditions").list.contains(condition).to_numpy().astype(float)
                cells[f"probe: {condition}"] = probe_auroc(vectors, target)
            table[(task, order)] = cells
    for task in tasks:
        names = list(table[(task, "ranked")])
        lines += [f"\n**{task}**\n", "| | ranked | random |", "|---|---|---|"]
        lines += [f"| {n} | {table[(task, 'ranked')][n]:.3f} | {table[(task, 'random')][n]:.3f} |" for n in names]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="evidence")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--workdir", default=".", help="where the run's results/ and resources/ are")
    parser.add_argument("--out", help="also write the report to this Markdown file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        text = run(Path(args.workdir), args.dataset, args.fold, Path(tmp))
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
