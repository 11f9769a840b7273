"""Where does the planted signal go? A per-stage probe report on a synthetic run.

The generator plants conditions that leave no trace in the charted variables (``NOTE_ONLY``: metastatic
cancer, cirrhosis, acute kidney injury) with known effects on the outcomes, and records per stay what it
planted and which of its own conditions the notes mention (``ground_truth.parquet``). After a run of
``config/evidence.yaml`` (or ``config/synthetic-check.yaml``) this follows each planted condition through the
pipeline, as a share of the stays planted with it:

    planted -> mentioned in the notes -> entity found (affirmed, any note) -> entity found in a note the task
    may read (charted before its prediction time) -> node aligned -> in the retrieved context -> in the
    knowledge text -> recoverable from the text embeddings (probe AUROC) -> model gain

so that a loss shows at one stage. A condition's nodes are the ones its own entities (those naming it) align
to, whatever the node is called ("stage IV cancer" may align to a neoplasm node); "in context" and "in
knowledge text" look for those nodes, by index and by name. The probes are logistic regressions on one embedding, scored by 5-fold
cross-validated AUROC over the labelled stays. The model gains are the paired-bootstrap AUPRC differences from
the reference model in ``metrics/{task}/{model}.json`` (pooled out of fold where the run has folds).
Retrieval, knowledge and embeddings are fold-specific with folds; the report reads fold 0's.

    .venv/bin/python bench/synthetic_signal.py --dataset evidence [--workdir .] [--out probe_report.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic import CONDITIONS, NOTE_ONLY  # noqa: E402
from emerge_ehr.evaluate.metrics import auroc  # noqa: E402

FORMS = {c.name: tuple(form.lower() for form in c.forms) for c in CONDITIONS}


def names_condition(name: str, condition: str) -> bool:
    """Whether a string (entity or node name) names the condition: one of its surface forms is a whole-word
    part of it, or it is a part of a form ("cirrhosis" in "liver cirrhosis").

    >>> names_condition("Hepatic cirrhosis", "cirrhosis"), names_condition("renal failure", "cirrhosis")
    (True, False)
    """
    text = f" {name.lower()} "
    return any(f" {form} " in text or f" {text.strip()} " in f" {form} " for form in FORMS[condition])


def stays_naming(frame: pl.DataFrame, column: str, condition: str) -> set[int]:
    """Stay ids whose ``column`` (a string, or a list of strings) names the condition."""
    values = frame.select("stay_id", column)
    if values.schema[column] == pl.List(pl.String):
        values = values.explode(column)
    return {s for s, v in values.drop_nulls().iter_rows() if names_condition(v, condition)}


def condition_nodes(aligned: pl.DataFrame, condition: str) -> dict[int, str]:
    """The nodes (index -> name) that the condition's own entities align to: node-level ground truth.

    >>> aligned = pl.DataFrame({"entity": ["stage IV cancer", "fever"], "node_index": [3, 4],
    ...                         "node_name": ["Neoplasm metastasis", "Fever"]})
    >>> condition_nodes(aligned, "metastatic cancer")
    {3: 'Neoplasm metastasis'}
    """
    return {i: n for e, i, n in aligned.select("entity", "node_index", "node_name").unique().iter_rows()
            if names_condition(e, condition)}


def stays_with_nodes(context: pl.DataFrame, nodes: dict[int, str]) -> set[int]:
    """Stay ids whose retrieved context holds one of ``nodes``."""
    found = context.select("stay_id", "node_indices").explode("node_indices")
    return set(found.filter(pl.col("node_indices").is_in(list(nodes))).get_column("stay_id"))


def stays_mentioning(knowledge: pl.DataFrame, nodes: dict[int, str]) -> set[int]:
    """Stay ids whose knowledge text names one of ``nodes``."""
    names = [n.lower() for n in nodes.values()]
    return {s for s, t in knowledge.select("stay_id", "text").iter_rows() if t and any(n in t.lower() for n in names)}


def probe_auroc(features: np.ndarray, target: np.ndarray) -> float:
    """5-fold cross-validated AUROC of a logistic regression recovering ``target`` from ``features``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    if target.min() == target.max():
        return float("nan")
    scores = cross_val_predict(LogisticRegression(max_iter=2000), features, target, cv=5, method="predict_proba")
    return auroc(target, scores[:, 1])


def gain(metrics_dir: Path, task: str, model: str) -> str:
    path = metrics_dir / task / f"{model}.json"
    if not path.exists():
        return "-"
    result = json.loads(path.read_text())
    d = (result.get("versus_reference") or {}).get("metrics", {}).get("auprc")
    return f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]" if d else "-"


def report(workdir: Path, dataset: str) -> str:
    results = workdir / "results" / dataset
    fitted = results / "folds" / "fold0" if (results / "folds").exists() else results
    truth = pl.read_parquet(workdir / "resources" / "synthetic" / dataset / "ground_truth.parquet")
    cohort = pl.read_parquet(results / "cohort.parquet").with_row_index("row")
    stays = cohort.join(truth.select("stay_id", "conditions", "mentions"), on="stay_id", how="left")
    notes = pl.read_parquet(results / "notes.parquet")
    entities = pl.read_parquet(results / "entities.parquet").filter(~pl.col("negated") & ~pl.col("family"))
    aligned = pl.read_parquet(fitted / "aligned.parquet").filter(pl.col("accepted") & (pl.col("source") == "note"))
    context = pl.read_parquet(fitted / "context.parquet")
    knowledge = pl.read_parquet(fitted / "knowledge.parquet") if (fitted / "knowledge.parquet").exists() else None
    lines = []
    for task in ("mortality", "readmission"):
        if not (fitted / "embeddings" / f"{task}.npz").exists():
            continue  # a run of one task
        labelled = stays.filter(pl.col(task).is_not_null())
        rows = labelled.get_column("row").to_numpy()
        readable = entities.join(notes.filter(pl.col(task)).select("stay_id", "note_id"), on=["stay_id", "note_id"],
                                 how="semi")
        task_context = context.filter(pl.col("task") == task)
        task_knowledge = knowledge.filter(pl.col("task") == task) if knowledge is not None else None
        with np.load(fitted / "embeddings" / f"{task}.npz") as text:
            mask = text["notes_mask"][rows]
            mean_chunk = (text["notes"][rows] * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            embeddings = {"note chunks": mean_chunk,
                          "LLM summary": text["summary"][rows] if text["summary_mask"][rows].any() else None,
                          "knowledge text": text["knowledge"][rows] if text["knowledge_mask"][rows].any() else None}
        header = ["condition", "planted", "mentioned in notes", "entity found", "entity before prediction time",
                  "node aligned", "in context", "in knowledge text"]
        header += [f"probe: {name}" for name, e in embeddings.items() if e is not None]
        lines += [f"\n**{task}** ({labelled.height} labelled stays)\n", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        for condition in NOTE_ONLY:
            planted = labelled.filter(pl.col("conditions").list.contains(condition))
            ids = set(planted.get_column("stay_id"))
            mentioned = {s for s, m in planted.select("stay_id", "mentions").iter_rows()
                         if any(names_condition(x, condition) for x in m)}
            nodes = condition_nodes(aligned, condition)
            own = readable.filter(pl.col("entity").map_elements(lambda e: names_condition(e, condition),
                                                                return_dtype=pl.Boolean))
            stages = [mentioned, stays_naming(entities, "entity", condition), set(own.get_column("stay_id")),
                      set(own.join(aligned, on="entity", how="semi").get_column("stay_id")),
                      stays_with_nodes(task_context, nodes)]
            if task_knowledge is not None:
                stages.append(stays_mentioning(task_knowledge, nodes))
            cells = [condition, f"{len(ids)} ({len(ids) / labelled.height:.1%})"]
            cells += [f"{len(ids & found) / max(len(ids), 1):.0%}" for found in stages]
            cells += ["-"] * (8 - len(cells))
            target = labelled.get_column("conditions").list.contains(condition).to_numpy().astype(float)
            cells += [f"{probe_auroc(e, target):.3f}" for e in embeddings.values() if e is not None]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("\nnodes per condition: " + "; ".join(
            f"{c}: {', '.join(sorted(condition_nodes(aligned, c).values())) or 'none'}" for c in NOTE_ONLY))
        models = ("oracle", "note_only", "knowledge_only", "ts_note", "ts_knowledge", "emerge_knowledge", "emerge",
                  "ts_note_late", "ts_knowledge_late", "ts_nodes_late", "emerge_knowledge_late", "emerge_late")
        gains = [f"{m} {g}" for m in models if (g := gain(results / "metrics", task, m)) != "-"]
        lines.append(f"\nAUPRC gain over the reference (x100, paired 95 % CI): {'; '.join(gains) or 'none'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="evidence")
    parser.add_argument("--workdir", default=".", help="where the run's results/ and resources/ are")
    parser.add_argument("--out", help="also write the report to this Markdown file")
    args = parser.parse_args(argv)
    text = report(Path(args.workdir), args.dataset)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
