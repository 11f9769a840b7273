"""Notes are flagged per task by its prediction time."""

from __future__ import annotations

import datetime as dt

import polars as pl

from emerge_ehr.data.notes import NOTE_SCHEMA, stay_notes

T0 = dt.datetime(2150, 1, 1, 8, 0)


def test_prediction_windows():
    cohort = pl.LazyFrame({"stay_id": [1], "subject_id": [1], "hadm_id": [10], "intime": [T0], "admittime": [T0],
                           "dischtime": [T0 + dt.timedelta(days=6)]})
    times = {"h1": 1, "h47": 47.9, "h49": 49, "discharge": 144, "after": 150}
    notes = pl.LazyFrame({
        "note_id": list(times) + ["other-admission", "empty", "no-hadm-inside", "no-hadm-outside"],
        "subject_id": [1] * 9,
        "hadm_id": [10] * 5 + [11, 10, None, None],
        "charttime": [T0 + dt.timedelta(hours=h) for h in times.values()]
        + [T0, T0, T0 + dt.timedelta(hours=3), T0 + dt.timedelta(days=9)],
        "category": ["Radiology"] * 9,
        "text": ["text"] * 6 + ["  ", "text", "text"],
    })
    out = stay_notes(notes, cohort, 48).collect()
    assert dict(out.schema) == NOTE_SCHEMA
    flags = {r["note_id"]: (r["mortality"], r["readmission"]) for r in out.iter_rows(named=True)}
    assert flags == {
        "h1": (True, True),
        "h47": (True, True),
        "h49": (False, True),  # charted at hour 49: too late for mortality at 48 h, usable for readmission
        "discharge": (False, True),
        "after": (False, False),
        "no-hadm-inside": (True, True),  # no admission id: placed by time inside admission 10
    }


def test_no_notes_is_an_empty_table_not_an_error():
    cohort = pl.LazyFrame({"stay_id": [1], "subject_id": [1], "hadm_id": [10], "intime": [T0], "admittime": [T0],
                           "dischtime": [T0]})
    empty = pl.LazyFrame(schema={"note_id": pl.String, "subject_id": pl.Int64, "hadm_id": pl.Int64,
                                 "charttime": pl.Datetime("us"), "category": pl.String, "text": pl.String})
    assert stay_notes(empty, cohort, 48).collect().height == 0
