"""How much can text add on a synthetic cohort, and how much of it do the embeddings carry?

The generator plants conditions that leave no trace in the time series (metastatic cancer, cirrhosis, acute
kidney injury) and writes what it planted per stay to ``ground_truth.parquet``. After a run of
``config/synthetic-check.yaml`` this prints, per task:

- the oracle: the GRU's test predictions with the true log-odds effects of the planted note-only conditions
  added (no fitting), and its paired-bootstrap gain over the GRU: the most any text model could add;
- probes: how well a logistic regression on the mean note-chunk embedding, or on the summary embedding,
  recovers each planted condition (test AUROC), i.e. whether the text representation carries the signal.

    .venv/bin/python bench/synthetic_signal.py [--dataset check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic import CONDITIONS  # noqa: E402
from emerge_ehr.evaluate.metrics import auprc, auroc, bootstrap_indices, paired_difference  # noqa: E402

NOTE_ONLY = ("metastatic cancer", "cirrhosis", "acute kidney injury")


def seed_mean(paths: list[Path]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in paths]).group_by("stay_id").agg(pl.col("probability").mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="check")
    parser.add_argument("--workdir", default=".", help="where the run's results/ and resources/ are")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    results = Path(args.workdir) / "results" / args.dataset
    truth = pl.read_parquet(Path(args.workdir) / "resources" / "synthetic" / args.dataset / "ground_truth.parquet")
    cohort = pl.read_parquet(results / "cohort.parquet").with_row_index("row")
    stays = cohort.join(truth.select("stay_id", "conditions"), on="stay_id", how="left").with_columns(
        [pl.col("conditions").list.contains(name).alias(name) for name in NOTE_ONLY])
    for task in ("mortality", "readmission"):
        labelled = stays.filter(pl.col(task).is_not_null())
        gru = seed_mean(sorted((results / "models" / task / "gru").glob("seed*/predictions.parquet")))
        test = labelled.join(gru, on="stay_id").filter(pl.col("split") == "test")
        y = test.get_column(task).cast(pl.Float64).to_numpy()
        p = test.get_column("probability").to_numpy()
        flags = test.select(NOTE_ONLY).to_numpy().astype(float)
        effects = np.array([getattr(next(c for c in CONDITIONS if c.name == n), task) for n in NOTE_ONLY])
        oracle = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + flags @ effects)))
        gain = paired_difference(y, [oracle], [p], bootstrap_indices(len(y), 1000, 0))
        print(f"{task}: {len(y)} test stays, {int(y.sum())} positives; planted note-only conditions in "
              f"{', '.join(f'{n} {m:.1%}' for n, m in zip(NOTE_ONLY, flags.mean(0)))}")
        for metric, score in (("auroc", auroc), ("auprc", auprc)):
            g = gain[metric]
            print(f"  {metric}: GRU {100 * score(y, p):.2f}, oracle {100 * score(y, oracle):.2f}, gain "
                  f"{100 * g['difference']:+.2f} [{100 * g['ci_low']:+.2f}, {100 * g['ci_high']:+.2f}]")
        with np.load(results / "embeddings" / f"{task}.npz") as text:
            rows = labelled.get_column("row").to_numpy()
            notes, mask, summary = text["notes"][rows], text["notes_mask"][rows], text["summary"][rows]
        mean_notes = (notes * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        split = labelled.get_column("split").to_numpy()
        planted = labelled.select(NOTE_ONLY).to_numpy().astype(float)
        for j, name in enumerate(NOTE_ONLY):
            scores = []
            for features in (mean_notes, summary):
                probe = LogisticRegression(max_iter=2000).fit(features[split == "train"], planted[split == "train", j])
                scores.append(auroc(planted[split == "test", j], probe.predict_proba(features[split == "test"])[:, 1]))
            print(f"  probe AUROC for {name}: note chunks {scores[0]:.3f}, summary {scores[1]:.3f}")


if __name__ == "__main__":
    main()
