"""The paper's ablation claims on a finished run, in one table (src/emerge_ehr/evaluate/ablations.py; the
workflow writes the same table to results/{dataset}/metrics/ablations.md, this recomputes it): EMERGE
against the GRU, staged against joint training, the knowledge against the notes, LLM summary against the
knowledge text, and the scarcity points, each a paired difference with its interval and the smallest effect the
run resolves.

    .venv/bin/python bench/ablations.py --configfile config/evidence.yaml > ablations.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.evaluate.ablations import ablation_markdown, ablation_rows  # noqa: E402
from emerge_ehr.evaluate.report import evaluated_on  # noqa: E402


def run_settings(configfile: str | Path) -> dict:
    """The settings a finished run used: its config file over the defaults (config/config.yaml)."""
    config = yaml.safe_load(Path(configfile).read_text())
    defaults = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return {key: defaults.get(key, {}) | config.get(key, {}) for key in ("evaluate", "train", "scarcity")} | {
        key: config.get(key, defaults.get(key)) for key in ("datasets", "tasks", "models")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", required=True, help="the run's config (its datasets, folds, seeds)")
    parser.add_argument("--dataset", help="default: the config's first dataset")
    parser.add_argument("--results", default=str(REPO / "results"), help="the run's results folder")
    args = parser.parse_args(argv)
    settings = run_settings(args.configfile)
    evaluate, train, scarcity = settings["evaluate"], settings["train"], settings["scarcity"]
    dataset = args.dataset or next(iter(settings["datasets"]))
    folds = evaluate.get("folds", 1)
    rows = ablation_rows(Path(args.results) / dataset, settings["tasks"], settings["models"], folds, train["seeds"],
                         evaluate["bootstrap_resamples"], evaluate["confidence_level"], evaluate["seed"],
                         {model: scarcity["percents"] for model in scarcity["models"]})
    print(ablation_markdown(rows, evaluate["confidence_level"], evaluated_on(folds)))


if __name__ == "__main__":
    main()
