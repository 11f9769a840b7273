"""Task labels in MEDS's label schema and the models' predictions in meds-evaluation's prediction schema.

A MEDS label row is keyed by (subject_id, prediction_time), not by stay, and the schema allows no other column:
a side table ``{task}_stays.parquet`` maps the key to the stay. Predictions are one seed's test rows, or with
cross-validation folds its pooled out-of-fold rows (``evaluate.report.test_rows``, the rows the metrics use).
"""

from __future__ import annotations

import logging
from pathlib import Path

import meds
import polars as pl
from meds_evaluation.schema import PredictionSchema

from emerge_ehr.data.cohort import prediction_time
from emerge_ehr.data.tables import InputError
from emerge_ehr.evaluate import report
from emerge_ehr.meds.export import write_validated
from emerge_ehr.stages import write_parquet_atomically

log = logging.getLogger("emerge_ehr")

KEY = ["subject_id", "prediction_time"]
THRESHOLD = 0.5  # predicted_boolean_value: probability >= THRESHOLD


def task_labels(cohort: pl.LazyFrame, task: str, hours: int, readmission_definition: str) -> pl.LazyFrame:
    """subject_id, prediction_time, boolean_value, stay_id of every stay with a label (not-at-risk stays, whose
    label is null, are left out), sorted by subject and time. The prediction time is the one the workflow's
    models and notes respect (``cohort.prediction_time``).

    >>> import datetime as dt
    >>> cohort = pl.LazyFrame({"stay_id": [100, 101], "subject_id": [1, 2],
    ...     "intime": [dt.datetime(2150, 1, 1), dt.datetime(2150, 2, 1)],
    ...     "outtime": [dt.datetime(2150, 1, 4), dt.datetime(2150, 2, 3)],
    ...     "dischtime": [dt.datetime(2150, 1, 9), dt.datetime(2150, 2, 3)],
    ...     "mortality": [0, 1], "readmission": [1, None]}, schema_overrides={"readmission": pl.Int8})
    >>> task_labels(cohort, "mortality", 48, "icu").collect().rows()  # doctest: +NORMALIZE_WHITESPACE
    [(1, datetime.datetime(2150, 1, 3, 0, 0), False, 100), (2, datetime.datetime(2150, 2, 3, 0, 0), True, 101)]
    >>> task_labels(cohort, "readmission", 48, "icu").collect().rows()
    [(1, datetime.datetime(2150, 1, 4, 0, 0), True, 100)]
    >>> task_labels(cohort, "readmission", 48, "hospital").collect().rows()
    [(1, datetime.datetime(2150, 1, 9, 0, 0), True, 100)]
    """
    time = prediction_time(task, hours, readmission_definition).cast(pl.Datetime("us"))
    return (
        cohort.filter(pl.col(task).is_not_null())
        .select("subject_id", time.alias("prediction_time"), (pl.col(task) == 1).alias("boolean_value"), "stay_id")
        .sort(KEY)
    )


def check_unique_keys(labels: pl.DataFrame, task: str) -> None:
    """MEDS tools key a label by (subject_id, prediction_time): two stays sharing a key cannot both be written."""
    shared = labels.filter(pl.struct(KEY).is_duplicated())
    if shared.height:
        raise InputError(f"task {task}: stays {sorted(shared.get_column('stay_id'))} share a (subject_id,"
                         " prediction_time); MEDS labels need one row per key")


def write_labels(cohort: str, task: str, hours: int, readmission_definition: str, labels_out: str | Path,
                 stays_out: str | Path) -> None:
    labels = task_labels(pl.scan_parquet(cohort), task, hours, readmission_definition).collect()
    check_unique_keys(labels, task)
    write_validated(labels.drop("stay_id"), meds.LabelSchema, labels_out)
    write_parquet_atomically(labels.select(*KEY, "stay_id"), stays_out)
    log.info("MEDS labels %s: %d rows, %d positive", task, labels.height, labels.get_column("boolean_value").sum())


def prediction_rows(test: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """One seed's test rows (stay_id, label, probability) in meds-evaluation's schema: the probability as float32
    (as meds-evaluation scores it) and predicted_boolean_value = probability >= 0.5 (it needs both columns).
    ``labels``: the task's labels with stay_id; a test stay without one, or with another label, is an error.

    >>> import datetime as dt
    >>> labels = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [dt.datetime(2150, 1, 3)] * 2,
    ...     "boolean_value": [False, True], "stay_id": [100, 101]})
    >>> test = pl.DataFrame({"stay_id": [101, 100], "label": [1, 0], "probability": [0.7, 0.2]})
    >>> prediction_rows(test, labels).select("subject_id", "boolean_value", "predicted_boolean_value").rows()
    [(1, False, False), (2, True, True)]
    """
    joined = test.join(labels, on="stay_id", how="left")
    unlabelled = joined.filter(pl.col("boolean_value").is_null() | (pl.col("boolean_value") != (pl.col("label") == 1)))
    if unlabelled.height:
        raise InputError(f"stays {sorted(unlabelled.get_column('stay_id'))[:10]} have predictions but no MEDS label,"
                         " or another one: the predictions are not of this cohort")
    probability = pl.col("probability").cast(pl.Float32)
    return joined.select(*KEY, "boolean_value", (probability >= THRESHOLD).alias("predicted_boolean_value"),
                         probability.alias("predicted_boolean_probability")).sort(KEY)


SKIPPED_KEY = "emerge_ehr.skipped"


def write_predictions(run: report.Run, labels: str, stays: str, out: str | Path) -> None:
    """One seed's predictions. A skipped model (no text to read) writes the schema, no rows, and its reason in
    the file's Parquet metadata (``skipped_reason`` reads it): meds-evaluation cannot score an empty file."""
    labelled = pl.read_parquet(labels).join(pl.read_parquet(stays), on=KEY, how="inner")
    reason = report.skipped_reason([run])
    test = report.test_rows(run).head(0) if reason else report.test_rows(run)
    rows = prediction_rows(test.select("stay_id", "label", "probability"), labelled)
    write_validated(rows, PredictionSchema, out, {SKIPPED_KEY: reason} if reason else None)
    log.info("MEDS predictions: %d rows%s", rows.height, f" (skipped: {reason})" if reason else "")


def skipped_reason(path: str | Path) -> str | None:
    """Why a predictions file has no rows (its model was skipped), or None for a file of a trained model; a run
    of meds-evaluation over the predictions leaves out the files that have a reason."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    reason = metadata.get(SKIPPED_KEY.encode())
    return reason.decode() if reason is not None else None
