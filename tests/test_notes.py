"""Notes are matched to stays and flagged per task by its prediction time; dropped notes are counted."""

from __future__ import annotations

import datetime as dt
import logging

import polars as pl
import pytest

from emerge_ehr import stages
from emerge_ehr.data.notes import (
    MATCHED, NO_TEXT, NOTE_SCHEMA, OTHER_ADMISSION, OTHER_PATIENT, OUTSIDE_ADMISSIONS, note_fates, stay_notes,
)

T0 = dt.datetime(2150, 1, 1, 8, 0)


@pytest.mark.parametrize("definition", ["icu", "hospital"])
def test_prediction_windows(definition):
    """Mortality reads notes charted before hour 48; readmission those up to where its label's window starts: ICU
    discharge (day 4) under the ``icu`` definition, hospital discharge (day 6) under ``hospital``."""
    cohort = pl.LazyFrame({"stay_id": [1], "subject_id": [1], "hadm_id": [10], "intime": [T0],
                           "outtime": [T0 + dt.timedelta(days=4)], "admittime": [T0],
                           "dischtime": [T0 + dt.timedelta(days=6)]})
    times = {"h1": 1, "h47": 47.9, "h49": 49, "icu-discharge": 96, "ward": 100, "discharge": 144, "after": 150}
    notes = pl.LazyFrame({
        "note_id": list(times) + ["other-admission", "empty", "no-hadm-inside", "no-hadm-outside"],
        "subject_id": [1] * 11,
        "hadm_id": [10] * 7 + [11, 10, None, None],
        "charttime": [T0 + dt.timedelta(hours=h) for h in times.values()]
        + [T0, T0, T0 + dt.timedelta(hours=3), T0 + dt.timedelta(days=9)],
        "category": ["Radiology"] * 11,
        "text": ["text"] * 8 + ["  ", "text", "text"],
    })
    out = stay_notes(notes, cohort, 48, definition).collect()
    assert dict(out.schema) == NOTE_SCHEMA
    flags = {r["note_id"]: (r["mortality"], r["readmission"]) for r in out.iter_rows(named=True)}
    after_icu = definition == "hospital"  # charted after ICU discharge, before hospital discharge
    assert flags == {
        "h1": (True, True),
        "h47": (True, True),
        "h49": (False, True),  # charted at hour 49: too late for mortality at 48 h, usable for readmission
        "icu-discharge": (False, True),
        "ward": (False, after_icu),  # a ward note (or a discharge summary) may say what the icu label counts
        "discharge": (False, after_icu),
        "after": (False, False),
        "no-hadm-inside": (True, True),  # no admission id: placed by time inside admission 10
    }


def test_no_notes_is_an_empty_table_not_an_error():
    cohort = pl.LazyFrame({"stay_id": [1], "subject_id": [1], "hadm_id": [10], "intime": [T0], "outtime": [T0],
                           "admittime": [T0], "dischtime": [T0]})
    empty = pl.LazyFrame(schema={"note_id": pl.String, "subject_id": pl.Int64, "hadm_id": pl.Int64,
                                 "charttime": pl.Datetime("us"), "category": pl.String, "text": pl.String})
    assert stay_notes(empty, cohort, 48, "icu").collect().height == 0


def _cohort() -> pl.LazyFrame:
    """Stay 1 of patient 1: hospital admission 10 from T0, ICU from T0 + 12 h to T0 + 4 days, discharge T0 + 6
    days."""
    return pl.LazyFrame({"stay_id": [1], "subject_id": [1], "hadm_id": [10], "intime": [T0 + dt.timedelta(hours=12)],
                         "outtime": [T0 + dt.timedelta(days=4)], "admittime": [T0],
                         "dischtime": [T0 + dt.timedelta(days=6)]})


def _notes(rows: dict[str, tuple]) -> pl.LazyFrame:
    """note_id -> (subject_id, hadm_id, hours after T0, text)."""
    subject, hadm, hours, text = zip(*rows.values())
    charttimes = [T0 + dt.timedelta(hours=h) for h in hours]
    return pl.LazyFrame({"note_id": list(rows), "subject_id": subject, "hadm_id": hadm, "charttime": charttimes,
                         "category": ["Radiology"] * len(rows), "text": text}, schema_overrides={"hadm_id": pl.Int64})


def test_notes_before_icu_admission_are_usable_for_both_tasks():
    """An emergency-department or ward note of the admission precedes both prediction times: nothing leaks."""
    notes = _notes({"ward": (1, 10, 2, "text"), "ed-no-hadm": (1, None, 1, "text")})
    out = stay_notes(notes, _cohort(), 48, "icu").collect()
    assert out.select("note_id", "hours_from_intime", "mortality", "readmission").sort("note_id").rows() == [
        ("ed-no-hadm", -11.0, True, True), ("ward", -10.0, True, True)]


def test_dropped_notes_are_counted_by_reason():
    notes = _notes({
        "inside": (1, None, 30, "text"),  # no admission id, inside admission 10: matched by time
        "before-admission": (1, None, -5, "text"),  # no admission id, before any cohort admission
        "after-discharge": (1, None, 24 * 9, "text"),
        "other-admission": (1, 11, 30, "text"),
        "other-patient": (2, 20, 30, "text"),
        "other-patient-no-hadm": (2, None, 30, "text"),
        "blank": (1, 10, 30, " \n"),
    })
    matched = stay_notes(notes, _cohort(), 48, "icu")
    assert matched.collect().get_column("note_id").to_list() == ["inside"]
    assert dict(note_fates(notes, _cohort(), matched).collect().rows()) == {
        MATCHED: 1, OUTSIDE_ADMISSIONS: 2, OTHER_ADMISSION: 1, OTHER_PATIENT: 2, NO_TEXT: 1}


def test_notes_stage_logs_counts_never_text(tmp_path, caplog):
    secret = "Patient reports crushing chest pain radiating to the left arm"
    _notes({"kept": (1, 10, 30, secret), "stranger": (2, None, 30, secret)}).collect().write_parquet(
        tmp_path / "notes.parquet")
    _cohort().collect().write_parquet(tmp_path / "cohort.parquet")
    with caplog.at_level(logging.INFO, logger="emerge_ehr"):
        stages.stay_notes(str(tmp_path / "notes.parquet"), str(tmp_path / "cohort.parquet"), 48, "icu",
                          tmp_path / "out.parquet")
    assert f"2 source notes: {{'{MATCHED}': 1, '{OTHER_PATIENT}': 1}}" in caplog.text
    assert "1 notes for 1 stays" in caplog.text and secret not in caplog.text


def test_the_notes_stage_in_parts_of_a_few_stays_gives_the_table_of_one_part(tmp_path, monkeypatch):
    """Full MIMIC-IV's notes are matched a share of the stays at a time (memory); the file is the same, sorted."""
    from emerge_ehr.data.synthetic import generate
    from emerge_ehr.data.tables import convert

    generate(tmp_path / "db", "mimic4", 40, seed=2)
    for table in ("notes", "admissions", "icustays", "patients"):
        convert(str(tmp_path / "db"), "mimic4", table, tmp_path / f"{table}.parquet", str(tmp_path / "db" / "note"))
    stays = pl.read_parquet(tmp_path / "icustays.parquet").join(
        pl.read_parquet(tmp_path / "admissions.parquet").select("hadm_id", "admittime", "dischtime"), on="hadm_id")
    stays.write_parquet(tmp_path / "cohort.parquet")
    tables = []
    for per_part in (100_000, 3):
        monkeypatch.setattr(stages, "STAYS_PER_PART", per_part)
        stages.stay_notes(str(tmp_path / "notes.parquet"), str(tmp_path / "cohort.parquet"), 48, "icu",
                          tmp_path / f"notes{per_part}.parquet")
        tables.append(pl.read_parquet(tmp_path / f"notes{per_part}.parquet"))
    assert tables[0].height > 10 and tables[1].equals(tables[0])
    assert tables[0].equals(tables[0].sort("stay_id", "charttime", "note_id"))
