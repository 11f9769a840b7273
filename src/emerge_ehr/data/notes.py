"""Clinical notes of each cohort stay, flagged by the prediction windows of the tasks.

Only notes charted before a task's prediction time (``cohort.prediction_time``) may be used for that task:
mortality is predicted at ICU admission + ``hours``; readmission at ICU discharge (``icu`` definition) or
hospital discharge (``hospital``). Using discharge summaries for mortality would leak the outcome, and so would
a discharge summary saying "Expired" for an ICU readmission label that counts deaths after the ICU. Notes
charted in the hospital admission before ICU admission (emergency department, ward) precede both prediction
times, so they are usable for both tasks.
"""

from __future__ import annotations

import polars as pl

from emerge_ehr.data.cohort import prediction_time

NOTE_SCHEMA = {
    "stay_id": pl.Int64,
    "note_id": pl.String,
    "charttime": pl.Datetime("us"),
    "category": pl.String,
    "text": pl.String,
    "hours_from_intime": pl.Float64,
    "mortality": pl.Boolean,
    "readmission": pl.Boolean,
}

HAS_TEXT = pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != "")

# What became of a source note: matched to a stay, or why it was dropped.
MATCHED = "matched"
NO_TEXT = "no text"
OTHER_PATIENT = "patient not in cohort"
OUTSIDE_ADMISSIONS = "no admission id, outside cohort admissions"
OTHER_ADMISSION = "admission not in cohort"


def stay_notes(notes: pl.LazyFrame, cohort: pl.LazyFrame, hours: int, readmission_definition: str) -> pl.LazyFrame:
    """Notes of each stay's admission, with one Boolean column per task: usable for that task.

    Notes are matched to the stay by admission id, or, where a note has none, by patient and time: the
    cohort admission of that patient whose admission and discharge times enclose the note's charttime.
    Notes charted before ICU admission keep a negative ``hours_from_intime`` and are usable for both tasks.

    >>> import datetime as dt
    >>> cohort = pl.LazyFrame({"stay_id": [1], "subject_id": [5], "hadm_id": [10],
    ...     "intime": [dt.datetime(2150, 1, 1)], "outtime": [dt.datetime(2150, 1, 5)],
    ...     "admittime": [dt.datetime(2150, 1, 1)], "dischtime": [dt.datetime(2150, 1, 9)]})
    >>> notes = pl.LazyFrame({"note_id": ["a", "b", "c", "d"], "subject_id": [5] * 4, "hadm_id": [10] * 4,
    ...     "charttime": [dt.datetime(2150, 1, 2), dt.datetime(2150, 1, 3, 1), dt.datetime(2150, 1, 6),
    ...                   dt.datetime(2150, 1, 9)],
    ...     "category": ["Radiology", "Radiology", "Radiology", "Discharge summary"], "text": ["w", "x", "y", "z"]})
    >>> stay_notes(notes, cohort, 48, "icu").select("note_id", "mortality", "readmission").collect().rows()
    [('a', True, True), ('b', False, True), ('c', False, False), ('d', False, False)]
    >>> stay_notes(notes, cohort, 48, "hospital").select("readmission").collect().to_series().to_list()
    [True, True, True, True]
    """
    mortality_time = prediction_time("mortality", hours, readmission_definition)
    readmission_time = prediction_time("readmission", hours, readmission_definition)
    with_text = notes.filter(HAS_TEXT)
    stays = cohort.select("stay_id", "subject_id", "hadm_id", "intime", "outtime", "admittime", "dischtime")
    by_admission = with_text.filter(pl.col("hadm_id").is_not_null()).join(
        stays.drop("subject_id"), on="hadm_id", how="inner"
    )
    # Notes without an admission id (many MIMIC-IV radiology reports) belong to the admission they fall in.
    by_time = (
        with_text.filter(pl.col("hadm_id").is_null())
        .drop("hadm_id")
        .join(stays, on="subject_id", how="inner")
        .filter(pl.col("charttime").is_between(pl.col("admittime"), pl.col("dischtime")))
    )
    columns = ["stay_id", "note_id", "charttime", "category", "text", "intime", "outtime", "dischtime"]
    return (
        pl.concat([by_admission.select(columns), by_time.select(columns)])
        .with_columns(
            hours_from_intime=(pl.col("charttime") - pl.col("intime")).dt.total_seconds() / 3600.0,
            mortality=(pl.col("charttime") < mortality_time).fill_null(False),
            readmission=(pl.col("charttime") <= readmission_time).fill_null(False),
        )
        .select(list(NOTE_SCHEMA))
        .cast(NOTE_SCHEMA)
        .sort("stay_id", "charttime", "note_id")
    )


def note_fates(notes: pl.LazyFrame, cohort: pl.LazyFrame, matched: pl.LazyFrame) -> pl.LazyFrame:
    """fate, notes: how many source notes ``stay_notes`` matched, and how many it dropped and why.

    For the stage's log, so that a dataset whose notes do not reach the models says so; counts only, never text.

    >>> cohort = pl.LazyFrame({"subject_id": [5]})
    >>> notes = pl.LazyFrame({"note_id": ["a", "b", "c", "d", "e"], "subject_id": [5, 5, 5, 5, 6],
    ...     "hadm_id": [10, 11, None, 10, 12], "text": ["x", "y", "z", " ", "w"]})
    >>> fates = note_fates(notes, cohort, pl.LazyFrame({"note_id": ["a"]})).collect()
    >>> dict(fates.rows())  # doctest: +NORMALIZE_WHITESPACE
    {'admission not in cohort': 1, 'matched': 1, 'no admission id, outside cohort admissions': 1, 'no text': 1,
     'patient not in cohort': 1}
    """
    patients = cohort.select("subject_id").unique().with_columns(patient_in_cohort=pl.lit(True))
    kept = matched.select("note_id").unique().with_columns(matched=pl.lit(True))
    fate = (
        pl.when(pl.col("matched")).then(pl.lit(MATCHED))
        .when(~pl.col("has_text")).then(pl.lit(NO_TEXT))
        .when(pl.col("patient_in_cohort").is_null()).then(pl.lit(OTHER_PATIENT))
        .when(pl.col("hadm_id").is_null()).then(pl.lit(OUTSIDE_ADMISSIONS))
        .otherwise(pl.lit(OTHER_ADMISSION))
    )
    return (
        notes.select("note_id", "subject_id", "hadm_id", HAS_TEXT.alias("has_text"))  # the text itself is not kept
        .join(patients, on="subject_id", how="left")
        .join(kept, on="note_id", how="left")
        .group_by(fate.alias("fate"))
        .agg(pl.len().cast(pl.Int64).alias("notes"))
        .sort("fate")
    )
