"""The synthetic MIMIC generator: table layouts, determinism and planted realism."""
import json

import polars as pl
import pytest

from emerge_ehr.data.synthetic import CONDITIONS, generate

MIMIC4 = {
    "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
    "hosp/admissions": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
    "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,edouttime,"
    "hospital_expire_flag",
    "icu/icustays": "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los",
    "icu/chartevents": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valuenum,"
    "valueuom,warning",
    "hosp/labevents": "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,charttime,storetime,"
    "value,valuenum,valueuom,ref_range_lower,ref_range_upper,flag,priority,comments",
    "note/radiology": "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text",
    "note/discharge": "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text",
}
MIMIC3 = {
    "PATIENTS": "ROW_ID,SUBJECT_ID,GENDER,DOB,DOD,DOD_HOSP,DOD_SSN,EXPIRE_FLAG",
    "ADMISSIONS": "ROW_ID,SUBJECT_ID,HADM_ID,ADMITTIME,DISCHTIME,DEATHTIME,ADMISSION_TYPE,ADMISSION_LOCATION,"
    "DISCHARGE_LOCATION,INSURANCE,LANGUAGE,RELIGION,MARITAL_STATUS,ETHNICITY,EDREGTIME,EDOUTTIME,DIAGNOSIS,"
    "HOSPITAL_EXPIRE_FLAG,HAS_CHARTEVENTS_DATA",
    "ICUSTAYS": "ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,DBSOURCE,FIRST_CAREUNIT,LAST_CAREUNIT,FIRST_WARDID,"
    "LAST_WARDID,INTIME,OUTTIME,LOS",
    "CHARTEVENTS": "ROW_ID,SUBJECT_ID,HADM_ID,ICUSTAY_ID,ITEMID,CHARTTIME,STORETIME,CGID,VALUE,VALUENUM,VALUEUOM,"
    "WARNING,ERROR,RESULTSTATUS,STOPPED",
    "LABEVENTS": "ROW_ID,SUBJECT_ID,HADM_ID,ITEMID,CHARTTIME,VALUE,VALUENUM,VALUEUOM,FLAG",
    "NOTEEVENTS": "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT",
}
LAYOUTS = {"mimic4": MIMIC4, "mimic3": MIMIC3}


def read(path, columns=None) -> pl.DataFrame:
    return pl.read_csv(path, columns=columns, infer_schema_length=None, try_parse_dates=columns is None)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Both layouts at a small size, generated once for the module."""
    out = {}
    for layout in LAYOUTS:
        path = tmp_path_factory.mktemp(layout)
        generate(path, layout=layout, n_patients=60, seed=3)
        out[layout] = path
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tables_have_mimic_columns(db, layout):
    manifest = json.loads((db[layout] / "synthetic_manifest.json").read_text())
    for name, columns in LAYOUTS[layout].items():
        df = read(db[layout] / f"{name}.csv.gz")
        assert df.columns == columns.split(","), name
        assert df.height == manifest["rows"][name] > 0, name
    truth = pl.read_parquet(db[layout] / "ground_truth.parquet")
    assert truth.schema == pl.Schema({"stay_id": pl.Int64, "subject_id": pl.Int64, "hadm_id": pl.Int64,
                                      "conditions": pl.List(pl.String), "severity": pl.Float64,
                                      "mentions": pl.List(pl.String)})
    stays = read(db[layout] / ("ICUSTAYS.csv.gz" if layout == "mimic3" else "icu/icustays.csv.gz"))
    assert truth.height == stays.height
    assert set(truth["conditions"].explode().drop_nulls()) <= {c.name for c in CONDITIONS}


def test_formats_match_mimic(db):
    text = (db["mimic4"] / "icu" / "icustays.csv.gz").read_bytes()
    import gzip

    header, first = gzip.decompress(text).decode().splitlines()[:2]
    fields = dict(zip(header.split(","), first.split(",")))
    assert len(fields["intime"]) == 19 and fields["intime"][10] == " "  # YYYY-MM-DD HH:MM:SS
    assert "." not in fields["stay_id"] and "." not in fields["hadm_id"]
    patients = read(db["mimic4"] / "hosp" / "patients.csv.gz")
    assert patients["dod"].dtype in (pl.Date, pl.String) and patients["anchor_year"].min() >= 2100
    notes = read(db["mimic3"] / "NOTEEVENTS.csv.gz")
    ds = notes.filter(pl.col("CATEGORY") == "Discharge summary")
    assert ds.height > 0 and ds["CHARTTIME"].null_count() == ds.height
    assert set(notes["CATEGORY"]) == {"Nursing", "Physician ", "Radiology", "Discharge summary"}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for run in ("a", "b"):
        generate(tmp_path / run, layout="mimic4", n_patients=30, seed=7)
    generate(tmp_path / "c", layout="mimic4", n_patients=30, seed=8)
    for name in MIMIC4:
        a = (tmp_path / "a" / f"{name}.csv.gz").read_bytes()
        assert a == (tmp_path / "b" / f"{name}.csv.gz").read_bytes(), name
    assert pl.read_parquet(tmp_path / "a" / "ground_truth.parquet").equals(
        pl.read_parquet(tmp_path / "b" / "ground_truth.parquet"))
    assert (tmp_path / "a" / "icu/chartevents.csv.gz").read_bytes() != (tmp_path / "c" / "icu/chartevents.csv.gz").read_bytes()


def test_stays_scale_with_patients(db):
    stays = read(db["mimic4"] / "icu" / "icustays.csv.gz")
    assert 60 <= stays.height <= 60 * 2


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    path = tmp_path_factory.mktemp("medium")
    generate(path, layout="mimic4", n_patients=300, seed=11)
    return path


def test_cohort_structure_is_realistic(medium):
    adm = read(medium / "hosp" / "admissions.csv.gz")
    stays = read(medium / "icu" / "icustays.csv.gz")
    assert adm.group_by("subject_id").len()["len"].max() >= 2
    assert stays.group_by("hadm_id").len()["len"].max() == 2
    assert (stays["first_careunit"] != stays["last_careunit"]).any()
    assert 0.5 <= (stays["los"] >= 2).mean() <= 0.8
    assert adm["hadm_id"].n_unique() > stays["hadm_id"].n_unique()  # some admissions without ICU stay
    long = stays.filter(pl.col("los") >= 2).join(adm, on="hadm_id")
    assert 0.05 <= long["hospital_expire_flag"].mean() <= 0.22
    dead = adm.filter(pl.col("hospital_expire_flag") == 1)
    assert dead["deathtime"].null_count() == 0 and (dead["deathtime"] <= dead["dischtime"]).all()
    patients = read(medium / "hosp" / "patients.csv.gz")
    assert (patients["anchor_age"] < 18).any() and (patients["anchor_age"] >= 89).any()


def test_charting_has_unit_mixes_and_noise(medium):
    chart = read(medium / "icu" / "chartevents.csv.gz", ["stay_id", "itemid", "value", "valuenum"])
    items = set(chart["itemid"])
    assert {223761, 223762, 226512, 226531, 226707, 226730} <= items
    gcs = chart.filter(pl.col("itemid") == 220739)
    assert gcs["value"].str.contains("Spontaneously").any() and gcs["valuenum"].is_not_null().all()
    fio2 = chart.filter(pl.col("itemid") == 223835)["valuenum"].drop_nulls()
    assert (fio2 <= 1).any() and (fio2 > 1).any()
    # charting errors: a heart rate of zero, and values recorded as text without a number
    assert (chart.filter(pl.col("itemid") == 220045)["valuenum"] == 0).any()
    errors = chart.filter(pl.col("value") == "Error")
    assert errors.height > 0 and errors["valuenum"].is_null().all()
    stays = read(medium / "icu" / "icustays.csv.gz")
    assert chart["stay_id"].n_unique() < stays.height  # a few stays without chart events
    labs = read(medium / "hosp" / "labevents.csv.gz")
    assert {50931, 50820} <= set(labs["itemid"]) and labs["hadm_id"].null_count() > 0


def test_notes_have_negations_family_history_and_mentions(medium):
    text = pl.concat([read(medium / "note" / f"{k}.csv.gz") for k in ("radiology", "discharge")])["text"]
    assert text.str.contains("No evidence of|Negative for|ruled out").any()
    assert text.str.contains("Family history of|Mother had|Father with|Sister with").any()
    assert text.str.contains(r"\b(CHF|COPD|AKI|DM|CVA|PNA|ARF|DKA)\b").any()
    truth = pl.read_parquet(medium / "ground_truth.parquet")
    adm = read(medium / "hosp" / "admissions.csv.gz")
    with_notes = read(medium / "note" / "discharge.csv.gz")["hadm_id"].n_unique()
    assert 0.7 <= with_notes / adm.height <= 0.95
    forms = {f: c.name for c in CONDITIONS for f in c.forms}
    for row in truth.filter(pl.col("mentions").list.len() > 0).iter_rows(named=True):
        assert {forms[m] for m in row["mentions"]} <= set(row["conditions"])


def test_the_scale_generator_streams_batches_at_mimic4_density(tmp_path):
    """Two batches, renumbered and appended to one gzip stream per table, padded to MIMIC-IV's density with
    items that no variable reads, in the MIMIC-IV columns that the convert stage reads."""
    from emerge_ehr.data.synthetic.scale import MIMIC4_DENSITY, generate_at_scale, variable_itemids
    from emerge_ehr.data.synthetic.vocabulary import DEFAULT_VARIABLES
    from emerge_ehr.stages import convert

    manifest = generate_at_scale(tmp_path / "db", 40, batch_patients=20)
    assert manifest["batches"] >= 2 and manifest["stays"] >= 40
    stays = read(tmp_path / "db" / "icu" / "icustays.csv.gz")
    assert stays.get_column("stay_id").is_unique().all() and stays.height == manifest["stays"]
    for table in ("icu/chartevents", "hosp/labevents", "note/radiology"):
        header = pl.read_csv(tmp_path / "db" / f"{table}.csv.gz", n_rows=1, infer_schema_length=0).columns
        assert header == MIMIC4[table].split(",")
    chart = read(tmp_path / "db" / "icu" / "chartevents.csv.gz", ["stay_id", "itemid"])
    assert chart.height >= MIMIC4_DENSITY["chartevents"] * stays.height
    assert set(chart.get_column("stay_id")) == set(stays.get_column("stay_id"))
    planted = chart.filter(pl.col("itemid").is_in(list(variable_itemids(DEFAULT_VARIABLES, "chartevents")))).height
    assert 0 < planted < chart.height / 3  # the 17 variables, and far more items that no variable reads
    notes = read(tmp_path / "db" / "note" / "radiology.csv.gz", ["note_id", "text"])
    discharge = read(tmp_path / "db" / "note" / "discharge.csv.gz", ["note_id"])
    assert notes.height + discharge.height >= MIMIC4_DENSITY["notes"] * stays.height
    assert pl.concat([notes.select("note_id"), discharge]).get_column("note_id").is_unique().all()
    assert 1000 < notes.get_column("text").str.len_chars().mean() < 2500  # radiology reports' length
    convert(str(tmp_path / "db"), "mimic4", "labevents", tmp_path / "labevents.parquet")
    assert pl.read_parquet(tmp_path / "labevents.parquet").height == manifest["rows"]["hosp/labevents"]
