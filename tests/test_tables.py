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


def test_a_table_without_text_columns_converts(tmp_path):
    write_gz(tmp_path / "hosp/admissions.csv.gz", "subject_id,hadm_id,admittime,dischtime,deathtime,hospital_expire_flag\n"
             "1,10,2150-01-01 08:00:00,2150-01-04 08:00:00,,0\n")
    assert convert(tmp_path, "mimic4", "admissions", tmp_path / "admissions.parquet") == 1


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
    assert pl.read_parquet(out).get_column("valuenum").to_list() == [80.0]  # the row without ERROR kept


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_headers_and_file_names_match_up_to_case(tmp_path, case):
    header, row = ICUSTAYS4.splitlines()
    mimic3 = "ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,FIRST_CAREUNIT,LAST_CAREUNIT,FIRST_WARDID,LAST_WARDID,INTIME,OUTTIME\n"
    write_gz(tmp_path / case("ICUSTAYS.csv.gz"), case(mimic3) + "1,1,10,100,MICU,MICU,7,7,2150-01-01 08:00:00,"
             "2150-01-04 08:00:00\n")
    out = tmp_path / "out" / "icustays.parquet"
    assert convert(tmp_path, "mimic3", "icustays", out) == 1
    frame = pl.read_parquet(out)
    assert dict(frame.schema) == CANONICAL["icustays"] and frame.row(0, named=True)["stay_id"] == 100
    write_gz(tmp_path / "iv/icu/icustays.csv.gz", case(header) + "\n" + row + "\n")
    assert convert(tmp_path / "iv", "mimic4", "icustays", out) == 1
    assert pl.read_parquet(out).columns == list(CANONICAL["icustays"])


def test_a_header_with_two_columns_equal_up_to_case_names_both(tmp_path):
    header, row = ICUSTAYS4.splitlines()
    write_gz(tmp_path / "icu/icustays.csv.gz", header + ",STAY_ID\n" + row + ",100\n")
    with pytest.raises(InputError, match=r"icustays\.csv\.gz: columns stay_id and STAY_ID are equal up to case"):
        convert(tmp_path, "mimic4", "icustays", tmp_path / "out.parquet")


def test_two_files_equal_up_to_case_are_named(tmp_path):
    write_gz(tmp_path / "ICUSTAYS.csv.gz", "x\n")
    write_gz(tmp_path / "icustays.csv.gz", "x\n")
    with pytest.raises(InputError, match="ICUSTAYS.csv.gz and icustays.csv.gz differ only in case"):
        source_files(tmp_path, "mimic3", "icustays")


NOTES4 = "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n"


def test_bytes_that_are_not_utf8_and_nul_are_replaced_counted_and_the_rest_kept(tmp_path, caplog):
    rows = [b'1-RR-1,1,10,RR,1,2150-01-02 10:00:00,,"caf\xe9 \xff\xfe note"\n',
            b'1-RR-2,1,10,RR,2,2150-01-02 11:00:00,,"before\x00after"\n',
            b'1-RR-3,1,10,RR,3,2150-01-02 12:00:00,,"a clean note"\n']
    path = tmp_path / "note/radiology.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(NOTES4.encode() + b"".join(rows)))
    out = tmp_path / "notes.parquet"
    with caplog.at_level("WARNING"):
        assert convert(tmp_path, "mimic4", "notes", out) == 3
    text = pl.read_parquet(out).sort("note_id").get_column("text").to_list()
    assert text[0].startswith("caf\ufffd") and text[1] == "before\ufffdafter" and text[2] == "a clean note"
    assert "2 value(s) of column text held bytes that are not UTF-8 text or NUL" in caplog.text
    assert not any(word in caplog.text for word in ("caf", "before", "clean"))  # counts only, never the text


@pytest.mark.parametrize("damage, rows", [("truncated", 200_000), ("corrupt", 200_000), ("truncated", 50)])
def test_a_damaged_gzip_is_named_and_leaves_no_parquet(tmp_path, damage, rows):
    lines = "".join(f"1,10,100,2150-01-01 {h % 24:02d}:00:00,220045,{60 + h % 50},{60 + h % 50},bpm\n"
                    for h in range(rows))
    data = bytearray(gzip.compress(("subject_id,hadm_id,stay_id,charttime,itemid,value,valuenum,valueuom\n"
                                    + lines).encode()))
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data[-6] ^= 0xFF  # the stored CRC-32 no longer matches
    path = tmp_path / "icu/chartevents.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(data))
    out = tmp_path / "out" / "chartevents.parquet"
    with pytest.raises(InputError, match=rf"chartevents\.csv\.gz: file is {damage}") as error:
        convert(tmp_path, "mimic4", "chartevents", out)
    assert "nothing of table 'chartevents' was written" in str(error.value)
    assert not any((tmp_path / "out").iterdir())


def test_notes_read_in_blocks_of_whole_records_equal_the_whole_file_read(tmp_path, monkeypatch):
    """Note files are converted block by block (polars would read the whole file first); records whose quoted
    text spans lines, holds doubled quotes or CRLF line ends must come out exactly as a whole-file read gives."""
    from functools import partial

    from emerge_ehr.data import streaming, tables

    texts = ['one line', 'two\nlines', 'quoted ""word"", then\r\nCRLF', '', 'x' * 300 + '\n\n' + 'y' * 50]
    rows = "".join(f'1-RR-{i},1,10,RR,{i},2150-01-02 {i % 24:02d}:00:00,,"{texts[i % len(texts)]}"\r\n'
                   for i in range(1, 400))
    path = write_gz(tmp_path / "note/radiology.csv.gz", NOTES4 + rows)
    whole = tables.finalise(tables.canonical_frame(path, "mimic4", "notes"), "mimic4", "notes").collect()
    monkeypatch.setattr(tables, "csv_record_blocks", partial(streaming.csv_record_blocks, block_bytes=97))
    assert len(list(tables.csv_record_blocks(path))) > 100
    out = tmp_path / "notes.parquet"
    assert convert(tmp_path, "mimic4", "notes", out) == 399
    assert pl.read_parquet(out).equals(whole)
    assert whole.get_column("text").str.contains("\n").sum() > 100


def test_a_damaged_note_file_is_named_and_leaves_no_parquet(tmp_path):
    rows = "".join(f'1-RR-{i},1,10,RR,{i},2150-01-02 10:00:00,,"report {i}\nsecond line {i * 7919}"\n'
                   for i in range(300_000))
    path = write_gz(tmp_path / "note/radiology.csv.gz", NOTES4 + rows)
    path.write_bytes(path.read_bytes()[:-5000])
    out = tmp_path / "out" / "notes.parquet"
    with pytest.raises(InputError, match=r"radiology\.csv\.gz: file is truncated"):
        convert(tmp_path, "mimic4", "notes", out)
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("notes", [2, 0])
def test_notes_from_parquet_source_files_convert_part_by_part(tmp_path, notes):
    source = pl.DataFrame({"note_id": ["1-RR-1", "1-RR-2"], "subject_id": [1, 1], "hadm_id": [10, 10],
                           "note_type": ["RR", "RR"], "note_seq": [1, 2], "text": ["a\nb", "c"],
                           "charttime": ["2150-01-02 10:00:00", "2150-01-02 11:00:00"], "storetime": [None, None]})
    (tmp_path / "note").mkdir()
    source.head(notes).write_parquet(tmp_path / "note/radiology.parquet")
    out = tmp_path / "notes.parquet"
    assert convert(tmp_path, "mimic4", "notes", out) == notes
    frame = pl.read_parquet(out)
    assert dict(frame.schema) == CANONICAL["notes"] and frame.get_column("text").to_list() == ["a\nb", "c"][:notes]


def test_writing_no_part_is_an_error_that_leaves_nothing(tmp_path):
    from emerge_ehr.data.streaming import write_parquet_in_parts

    with pytest.raises(ValueError, match="no part to write"):
        write_parquet_in_parts(iter([]), tmp_path / "empty.parquet")
    assert not any(tmp_path.iterdir())
