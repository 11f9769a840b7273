"""Cross-validation folds over the whole cohort: patient-grouped and stratified by the outcomes.

With ``evaluate.folds: K > 1`` every stay is a test stay in exactly one fold. Fold k's cohort file is the
cohort with its ``split`` column rewritten (fold k: ``test``; the other patients: ``train``, with a
patient-grouped share held out as ``val`` for early stopping), so that every stage that fits something on
the training split (feature normalisation, the abnormal-value z-scores) fits it on fold k's training part
only, by reading that file.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from emerge_ehr.data.tables import InputError

TASKS = ("mortality", "readmission")


def _patient_strata(cohort: pl.DataFrame) -> pl.DataFrame:
    """subject_id and a stratum per patient: which outcomes any of their stays has (null labels count as 0)."""
    return (
        cohort.group_by("subject_id")
        .agg([pl.col(task).fill_null(0).max().cast(pl.Int64).alias(task) for task in TASKS])
        .with_columns(stratum=pl.col("mortality") * 2 + pl.col("readmission"))
        .sort("subject_id")
        .select("subject_id", "stratum")
    )


def _deal(stratum: np.ndarray, parts: int, rng: np.random.Generator) -> np.ndarray:
    """A part number per row: the strata, each shuffled, laid end to end and dealt round robin, so every part
    gets an even share of every stratum."""
    order = np.concatenate([rng.permutation(np.flatnonzero(stratum == value)) for value in np.unique(stratum)])
    part = np.empty(len(stratum), dtype=np.int64)
    part[order] = np.arange(len(stratum)) % parts
    return part


def assign_folds(cohort: pl.DataFrame, folds: int, seed: int) -> pl.DataFrame:
    """stay_id, subject_id and fold (0..folds-1) of every cohort stay; a patient's stays share one fold.

    >>> cohort = pl.DataFrame({"stay_id": range(12), "subject_id": [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    ...     "mortality": [1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0], "readmission": [0] * 12})
    >>> out = assign_folds(cohort, 3, seed=0)
    >>> out.group_by("subject_id").agg(pl.col("fold").n_unique()).get_column("fold").max()
    1
    >>> sorted(out.unique("subject_id").get_column("fold").value_counts().get_column("count").to_list())
    [3, 4, 4]
    >>> out.filter(pl.col("subject_id").is_in([1, 5, 10])).get_column("fold").n_unique()  # the deaths spread
    3
    """
    patients = _patient_strata(cohort)
    if patients.height < folds:
        raise InputError(f"evaluate.folds is {folds} but the cohort has only {patients.height} patients")
    fold = _deal(patients.get_column("stratum").to_numpy(), folds, np.random.default_rng(seed))
    patients = patients.with_columns(fold=pl.Series(fold))
    return cohort.select("stay_id", "subject_id").join(patients.select("subject_id", "fold"), on="subject_id")


def fold_cohort(cohort: pl.DataFrame, folds: pl.DataFrame, fold: int, val_share: float, seed: int) -> pl.DataFrame:
    """The cohort with fold ``fold`` as its test split; of the other patients, one in round(1 / ``val_share``)
    (stratified, patient-grouped, drawn with ``seed`` and the fold) validate and the rest train.

    >>> cohort = pl.DataFrame({"stay_id": range(8), "subject_id": range(8), "mortality": [0, 1] * 4,
    ...     "readmission": [0] * 8, "split": ["train"] * 8})
    >>> folds = assign_folds(cohort, 2, seed=0)
    >>> out = fold_cohort(cohort, folds, 0, 0.25, seed=0)
    >>> sorted(out.get_column("split").value_counts().rows())
    [('test', 4), ('train', 3), ('val', 1)]
    """
    in_fold = folds.filter(pl.col("fold") == fold).get_column("subject_id").unique()
    rest = _patient_strata(cohort.filter(~pl.col("subject_id").is_in(in_fold.implode())))
    parts = max(2, round(1 / val_share))
    val = _deal(rest.get_column("stratum").to_numpy(), parts, np.random.default_rng([seed, fold])) == 0
    split = pl.DataFrame({"subject_id": rest.get_column("subject_id"), "split": np.where(val, "val", "train")})
    split = pl.concat([split, pl.DataFrame({"subject_id": in_fold, "split": ["test"] * in_fold.len()})])
    return cohort.drop("split").join(split, on="subject_id", how="left").select(cohort.columns)
