"""What each text input contributes to a staged fusion model, fold by fold and pooled out of fold.

Stage two of a staged fusion model scores, on validation, its start (``none``: exactly its GRU) and every subset of
its text kinds, each at its best epoch, and keeps one (src/emerge_ehr/model/text_choice.py). Each run writes every
choice's validation and test predictions (``text_choices.parquet``). This prints, per task and model:
- per fold (and seed): the kinds kept, and each choice's validation log loss with the text of its own stays and
  with the text of other stays (the information test);
- pooled out of fold: each choice's test AUROC and AUPRC, and its paired-bootstrap AUPRC difference from ``none``.
Nothing here is chosen on test: the test rows only show what the validation choice was worth.

    .venv/bin/python bench/fusion_inputs.py --configfile config/evidence.yaml > fusion_inputs.md
    # models of an earlier run, each text kind masked at prediction (what a model leans on):
    .venv/bin/python bench/fusion_inputs.py --configfile config/evidence.yaml --checkpoints before/ \
        --models ts_note emerge_knowledge
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
sys.path.insert(0, str(REPO / "bench"))

from ablations import run_settings  # noqa: E402
from emerge_ehr.evaluate.metrics import auprc, auroc, bootstrap_indices, paired_difference  # noqa: E402


def run_dirs(results: Path, task: str, model: str, folds: int, seeds: list[int]) -> list[tuple[str, Path]]:
    base = [(f"fold {k}", results / f"folds/fold{k}") for k in range(folds)] if folds > 1 else [("", results)]
    return [(f"{name} seed {seed}".strip(), root / f"models/{task}/{model}/seed{seed}") for seed in seeds
            for name, root in base]


def fold_lines(runs: list[tuple[str, Path]]) -> list[str]:
    summaries = [(name, json.loads((path / "summary.json").read_text())) for name, path in runs]
    text = [(name, s["stages"]["text"]) for name, s in summaries if "text" in s.get("stages", {})]
    if not text:
        return []
    choices = list(text[0][1]["candidates"])
    lines = ["| run | kept | " + " | ".join(f"{c}: val log loss (other stays' text)" for c in choices) + " |",
             "|---|---|" + "---|" * len(choices)]
    for name, stage in text:
        cells = []
        for choice in choices:
            c = stage["candidates"][choice]
            other = c.get("val_log_loss_other_stays_text")
            mark = "" if c.get("carries_information", True) else ", no information"
            cells.append(f"{c['val_log_loss']:.4f}" + (f" ({other:.4f}{mark})" if other is not None else "")
                         + f" @ {c['epoch']}")
        lines.append(f"| {name} | {'+'.join(stage['kept']) or 'none'} | " + " | ".join(cells) + " |")
    return lines


def masked_choices(run: Path, data: Path, task: str) -> pl.DataFrame:
    """For a checkpoint without ``text_choices.parquet`` (a model trained before stage two chose its text): its
    test predictions with each subset of its text kinds read, the others masked for every stay (``none``: the text
    side masked, not the GRU itself). Out of the distribution such a model was trained on, so a drop says what the
    model leans on, not what a model trained without that input would score."""
    import torch

    from emerge_ehr.evaluate.explain import reads
    from emerge_ehr.model.registry import build_model
    from emerge_ehr.model.text_selection import subset_name, subsets
    from emerge_ehr.stages import model_inputs

    checkpoint = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    settings = checkpoint["settings"]
    model = build_model(settings["model"], checkpoint["n_inputs"], settings["hidden_size"], settings["dropout"],
                        checkpoint["text_dim"], settings["heads"], settings["schedule"])
    model.load_state_dict(checkpoint["state_dict"], strict=False)  # checkpoints of before the kept-kinds buffer
    model.eval()
    cohort = pl.read_parquet(data / "cohort.parquet")
    rows = np.flatnonzero((cohort.get_column("split") == "test").to_numpy() & cohort.get_column(task).is_not_null()
                          .to_numpy())
    inputs = model_inputs(str(data / "features.npy"), str(data / f"embeddings/{task}.npz"), cohort.height)
    batch = {name: torch.from_numpy(np.ascontiguousarray(array[rows])) for name, array in inputs.items()}
    kinds = reads(model)
    frames = []
    for choice in [(), *subsets(kinds)]:
        model.text_selection.keep(choice)
        with torch.no_grad():
            probability = torch.sigmoid(model(**batch).float()).numpy()
        frames.append(pl.DataFrame({"stay_id": cohort.get_column("stay_id").to_numpy()[rows], "split": "test",
                                    "label": cohort.get_column(task).to_numpy()[rows].astype(np.int8),
                                    "inputs": subset_name(choice), "probability": probability.astype(np.float64)}))
    return pl.concat(frames)


def pooled_lines(runs: list[tuple[str, Path]], resamples: int, level: float, seed: int,
                 data: dict[str, Path] | None = None, task: str | None = None) -> list[str]:
    if data is not None:  # checkpoints without their choices: each subset masked at prediction
        frames = [masked_choices(path, data[name], task) for name, path in runs]
    else:
        frames = [pl.read_parquet(path / "text_choices.parquet").filter(pl.col("split") == "test")
                  for _, path in runs if (path / "text_choices.parquet").exists()]
    if not frames:
        return []
    tests = pl.concat(frames)
    choices = tests.get_column("inputs").unique(maintain_order=True).to_list()
    by_choice = {c: tests.filter(pl.col("inputs") == c).sort("stay_id") for c in choices}
    stays = by_choice["none"].get_column("stay_id")
    y = by_choice["none"].get_column("label").to_numpy().astype(float)
    indices = bootstrap_indices(len(y), resamples, seed)
    none = "none (text masked)" if data is not None else "none (the GRU)"
    lines = [f"| choice | test AUROC | test AUPRC | AUPRC vs {none}, paired CI |", "|---|---|---|---|"]
    for choice, frame in by_choice.items():
        if not frame.get_column("stay_id").equals(stays):
            raise ValueError(f"choice {choice}: other test stays than the GRU's")
        p = frame.get_column("probability").to_numpy()
        gap = paired_difference(y, [p], [by_choice["none"].get_column("probability").to_numpy()], indices, level,
                                ("auprc",))["auprc"]
        versus = "reference" if choice == "none" else (
            f"{100 * gap['difference']:+.2f} [{100 * gap['ci_low']:+.2f}, {100 * gap['ci_high']:+.2f}]")
        lines.append(f"| {choice} | {100 * auroc(y, p):.2f} | {100 * auprc(y, p):.2f} | {versus} |")
    return lines + ["", f"({len(y)} test stays, {int(np.sum(y))} positive, pooled over {len(frames)} runs.)"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", required=True, help="the run's config (its datasets, folds, seeds)")
    parser.add_argument("--dataset", help="default: the config's first dataset")
    parser.add_argument("--results", default=str(REPO / "results"), help="the run's results folder")
    parser.add_argument("--models", nargs="*", help="default: the run's staged fusion models")
    parser.add_argument("--checkpoints", help="runs of models trained before stage two chose its text (a copy of"
                        " results/{dataset}): their test predictions with each subset of text kinds masked")
    args = parser.parse_args(argv)
    settings = run_settings(args.configfile)
    evaluate, train = settings["evaluate"], settings["train"]
    dataset = args.dataset or next(iter(settings["datasets"]))
    results = Path(args.results) / dataset
    folds = evaluate.get("folds", 1)
    for task in settings["tasks"]:
        for model in args.models or settings["models"]:
            if args.checkpoints:
                runs = run_dirs(Path(args.checkpoints), task, model, folds, train["seeds"])
                data = {name: results / f"folds/fold{k}" if folds > 1 else results
                        for name, k in zip((name for name, _ in runs), [k for _ in train["seeds"]
                                                                        for k in range(folds)])}
                if not all((path / "model.pt").exists() for _, path in runs):
                    continue
                print(f"## {model}, {task}: each subset of its text kinds masked at prediction\n")
                print("\n".join(pooled_lines(runs, evaluate["bootstrap_resamples"], evaluate["confidence_level"],
                                             evaluate["seed"], data, task)) + "\n")
                continue
            runs = run_dirs(results, task, model, folds, train["seeds"])
            if not all((path / "summary.json").exists() for _, path in runs):
                continue
            lines = fold_lines(runs)
            if not lines:
                continue  # not a staged fusion model
            print(f"## {model}, {task}\n")
            print("\n".join(lines + [""] + pooled_lines(runs, evaluate["bootstrap_resamples"],
                                                        evaluate["confidence_level"], evaluate["seed"])) + "\n")


if __name__ == "__main__":
    main()
