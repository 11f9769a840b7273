"""Training throughput of every model: stays per second per epoch, on inputs of the pipeline's shapes.

Each neural model trains for a few epochs on random inputs of the shapes the pipeline feeds it (48 hours x 61
features; 8 note-chunk tokens and one summary token of 384 dimensions, as with the default encoder) with the
default settings (hidden size 128, batch 256); the classic models are fitted once. Early stopping is off, so
every run does the same work. Prints a Markdown table:

    .venv/bin/python bench/training_throughput.py [--stays 2000] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.model.classic import CLASSIC_MODELS, train_classic  # noqa: E402
from emerge_ehr.model.train import TrainSettings, train  # noqa: E402
from emerge_ehr.settings import schema_defaults  # noqa: E402

DEFAULTS = schema_defaults()

NEURAL = ("gru", "lstm", "transformer", "note_only", "summary_only", "ts_note", "ts_summary", "emerge_concat",
          "emerge")


def pipeline_shaped_inputs(stays: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {
        "series": rng.normal(size=(stays, 48, 61)).astype(np.float32),
        "notes": rng.normal(size=(stays, 8, 384)).astype(np.float32),
        "notes_mask": rng.random((stays, 8)) < 0.7,
        "summary": rng.normal(size=(stays, 384)).astype(np.float32),
        "summary_mask": np.ones(stays, dtype=bool),
    }
    labels = (rng.random(stays) < 0.15).astype(np.float64)
    splits = rng.choice(np.array(["train", "val", "test"]), size=stays, p=[0.7, 0.1, 0.2])
    return inputs, labels, splits


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    inputs, labels, splits = pipeline_shaped_inputs(args.stays)
    ids = np.arange(args.stays)
    print(f"{args.stays} stays ({(splits == 'train').sum()} training), {args.epochs} epochs, "
          f"{args.threads} threads, torch {torch.__version__}\n")
    print("| model | training stays/s per epoch | seconds per epoch |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in NEURAL:
            settings = TrainSettings.from_config(DEFAULTS, model=model, seed=0, max_epochs=args.epochs,
                                                 patience=args.epochs + 1, device="cpu")
            started = time.perf_counter()
            summary = train(inputs, labels, splits, ids, settings, Path(tmp) / model)
            per_epoch = (time.perf_counter() - started) / summary["epochs_run"]  # validation passes included
            print(f"| {model} | {summary['train_stays'] / per_epoch:,.0f} | {per_epoch:.2f} |")
        for model in CLASSIC_MODELS:
            started = time.perf_counter()
            summary = train_classic(model, inputs["series"], labels, splits, ids, 0, Path(tmp) / model)
            seconds = time.perf_counter() - started
            print(f"| {model} (one fit) | {summary['train_stays'] / seconds:,.0f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
