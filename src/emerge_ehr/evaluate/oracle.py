"""The oracle line of a synthetic dataset: the most that text about the note-only conditions could add.

The generator plants conditions that leave no trace in the charted variables (``NOTE_ONLY``) with known
log-odds effects on each outcome. The oracle adds those true effects, for the conditions each stay really has,
to the reference model's predictions: no fitting, no text. A text model that reads the notes perfectly could
at best approach it, so its gain over the reference shows what an evaluation can resolve.
"""

from __future__ import annotations

import polars as pl

from emerge_ehr.data.synthetic.conditions import CONDITIONS, NOTE_ONLY


def planted_log_odds(truth: pl.DataFrame, task: str) -> pl.DataFrame:
    """stay_id and the summed true log-odds effect on ``task`` of the note-only conditions it was planted with
    (stays planted with no condition at all are left out; the oracle counts them as 0).

    >>> truth = pl.DataFrame({"stay_id": [1, 2], "conditions": [["cirrhosis", "sepsis"], []]})
    >>> planted_log_odds(truth, "mortality").rows()
    [(1, 1.3)]
    """
    effect = {c.name: getattr(c, task) for c in CONDITIONS if c.name in NOTE_ONLY}
    return (
        truth.select("stay_id", "conditions").explode("conditions")
        .with_columns(pl.col("conditions").replace_strict(effect, default=0.0, return_dtype=pl.Float64).alias("log_odds"))
        .group_by("stay_id", maintain_order=True)
        .agg(pl.col("log_odds").sum())
    )


def oracle_predictions(reference: pl.DataFrame, truth: pl.DataFrame, task: str) -> pl.DataFrame:
    """The reference predictions (stay_id, split, label, probability) with the planted effects added on the
    log-odds scale; the same rows and columns.

    >>> reference = pl.DataFrame({"stay_id": [1, 2], "split": ["test", "test"], "label": [1, 0],
    ...     "probability": [0.2, 0.2]})
    >>> truth = pl.DataFrame({"stay_id": [1, 2], "conditions": [["metastatic cancer"], ["sepsis"]]})
    >>> [round(p, 3) for p in oracle_predictions(reference, truth, "mortality").get_column("probability")]
    [0.602, 0.2]
    """
    eps = 1e-6
    p = pl.col("probability").clip(eps, 1 - eps)
    logit = (p / (1 - p)).log() + pl.col("log_odds").fill_null(0.0)
    return (
        reference.join(planted_log_odds(truth, task), on="stay_id", how="left")
        .with_columns((1 / (1 + (-logit).exp())).alias("probability"))
        .select(reference.columns)
    )

