"""Conversion of source tables to canonical Parquet, and clear errors on bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from emerge_ehr.data.tables import CANONICAL, InputError, convert, source_files


def write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


ICUSTAYS4 = (
    "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los\n"
    "1,10,100,MICU,MICU,2150-01-01 08:00:00,2150-01-04 08:00:00,3.0\n"
)


def test_mimic4_table_converts_to_the_canonical_schema(tmp_path):
    write_gz(tmp_path / "icu/icustays.csv.gz", ICUSTAYS4)
    out = tmp_path / "out/icustays.parquet"
    assert convert(tmp_path, "mimic4", "icustays", out) == 1
    frame = pl.read_parquet(out)
    assert dict(frame.schema) == CANONICAL["icustays"]
    assert frame.get_column("first_wardid").is_null().all()


def test_missing_table_names_the_expected_file(tmp_path):
    with pytest.raises(InputError, match=r"icu/icustays\.csv\.gz"):
        source_files(tmp_path, "mimic4", "icustays")


def test_missing_column_names_file_and_column(tmp_path):
    write_gz(tmp_path / "icu/icustays.csv.gz", ICUSTAYS4.replace("intime", "in_time"))
    with pytest.raises(InputError, match=r"icustays\.csv\.gz: missing column\(s\) intime"):
        convert(tmp_path, "mimic4", "icustays", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_malformed_values_name_file_and_column(tmp_path):
    write_gz(tmp_path / "icu/icustays.csv.gz", ICUSTAYS4.replace("2150-01-01 08:00:00", "01/01/2150 8am"))
    with pytest.raises(InputError, match=r"icustays\.csv\.gz: column intime has values that are not"):
        convert(tmp_path, "mimic4", "icustays", tmp_path / "out.parquet")


def test_unknown_layout_is_named(tmp_path):
    with pytest.raises(InputError, match="mimic5"):
        source_files(tmp_path, "mimic5", "icustays")


def test_absent_note_module_gives_an_empty_table(tmp_path):
    out = tmp_path / "notes.parquet"
    assert convert(tmp_path, "mimic4", "notes", out) == 0
    frame = pl.read_parquet(out)
    assert frame.height == 0 and dict(frame.schema) == CANONICAL["notes"]


def test_mimic4_note_module_from_its_own_root(tmp_path):
    header = "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n"
    write_gz(tmp_path / "note-module/radiology.csv.gz", header + '1-RR-1,1,10,RR,1,2150-01-02 10:00:00,,"CXR: ""no PNA"", stable"\n')
    write_gz(tmp_path / "note-module/discharge.csv.gz", header + "1-DS-1,1,10,DS,1,2150-01-09 00:00:00,,Discharge text\n")
    out = tmp_path / "notes.parquet"
    assert convert(tmp_path / "mimic", "mimic4", "notes", out, notes_root=tmp_path / "note-module") == 2
    frame = pl.read_parquet(out).sort("note_id")
    assert frame.get_column("category").to_list() == ["Discharge summary", "Radiology"]
    assert frame.get_column("text").to_list()[1] == 'CXR: "no PNA", stable'


def test_mimic3_notes_without_time_are_placed_at_the_end_of_their_day(tmp_path):
    write_gz(
        tmp_path / "NOTEEVENTS.csv.gz",
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n"
        "1,1,10,2150-01-09,,,Discharge summary,Report,,,Summary\n"
        "2,1,10,2150-01-02,2150-01-02 10:00:00,,Nursing,Note,5,,Note text\n"
        "3,1,10,2150-01-02,2150-01-02 11:00:00,,Nursing,Note,5,1,Written in error\n",
    )
    out = tmp_path / "notes.parquet"
    convert(tmp_path, "mimic3", "notes", out)
    frame = pl.read_parquet(out).sort("note_id")
    assert frame.get_column("note_id").to_list() == ["1", "2"]  # the ISERROR note is dropped
    assert str(frame.get_column("charttime")[0]) == "2150-01-09 23:59:59"


def test_mimic3_chart_errors_are_dropped(tmp_path):
    write_gz(
        tmp_path / "CHARTEVENTS.csv.gz",
        "ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,ITEMID,CHARTTIME,STORETIME,CGID,VALUE,VALUENUM,VALUEUOM,WARNING,ERROR,"
        "RESULTSTATUS,STOPPED\n"
        "1,1,10,100,211,2150-01-01 09:00:00,,1,80,80,bpm,0,0,,\n"
        "2,1,10,100,211,2150-01-01 10:00:00,,1,800,800,bpm,0,1,,\n",
    )
    out = tmp_path / "chartevents.parquet"
    assert convert(tmp_path, "mimic3", "chartevents", out) == 1
