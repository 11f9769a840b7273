"""Paired comparisons between any two models of a finished run, beyond the table's "vs reference" column.

The table compares every model with one reference (the GRU). Questions such as "does the retrieved knowledge
add to the notes?" need other pairs: EMERGE with notes and knowledge against the same model with notes alone.
This scores each pair on the same test stays (pooled out of fold with folds) and the same bootstrap resamples
as the evaluate stage (``evaluate.bootstrap_resamples``, ``confidence_level``, ``seed`` of the run's config).

    .venv/bin/python bench/model_pairs.py --configfile config/evidence.yaml \\
        emerge_knowledge_late:ts_note_late emerge_knowledge_late:emerge_knowledge
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.evaluate.ablations import model_runs  # noqa: E402
from emerge_ehr.evaluate.report import evaluate_predictions  # noqa: E402

from ablations import run_settings  # noqa: E402  (beside this script)


def pair_rows(results: Path, tasks: list[str], pairs: list[tuple[str, str]], folds: int, seeds: list[int],
              resamples: int, level: float, seed: int) -> list[str]:
    rows = ["| model | against | task | AUROC difference | AUPRC difference |", "|---|---|---|---|---|"]
    for task in tasks:
        for model, reference in pairs:
            result = evaluate_predictions(model_runs(results, task, model, folds, seeds), task, model, resamples,
                                          level, seed, model_runs(results, task, reference, folds, seeds), reference)
            cells = []
            for metric in ("auroc", "auprc"):
                d = result["versus_reference"]["metrics"][metric]
                cells.append(f"{100 * d['difference']:+.2f} [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]")
            rows.append(f"| {model} | {reference} | {task} | {cells[0]} | {cells[1]} |")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", required=True, help="the run's config (its datasets, folds, seeds)")
    parser.add_argument("--dataset", help="default: the config's first dataset")
    parser.add_argument("pairs", nargs="+", help="model:reference")
    args = parser.parse_args(argv)
    settings = run_settings(args.configfile)
    evaluate, train = settings["evaluate"], settings["train"]
    dataset = args.dataset or next(iter(settings["datasets"]))
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs]
    rows = pair_rows(REPO / "results" / dataset, settings["tasks"], pairs,
                     evaluate.get("folds", 1), train["seeds"], evaluate["bootstrap_resamples"],
                     evaluate["confidence_level"], evaluate["seed"])
    print("\n".join(rows))


if __name__ == "__main__":
    main()
