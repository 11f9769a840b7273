"""`kind: meds` input: a MEDS dataset converted into the canonical tables (emerge_ehr.meds.reader; docs/meds.md,
"MEDS as input").

Unit tests on a small hand-made MEDS dataset, and (slow) the round trip on the MIMIC-IV demo: MEDS-Extract's
output read as `kind: meds` gives the same cohort, labels and, once lab times are taken as MEDS-Extract takes them
(storetime), the same feature array as `kind: mimic4` on the raw demo.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import meds
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emerge_ehr import stages
from emerge_ehr.data import tables
from emerge_ehr.data.cohort import stays_with_age
from emerge_ehr.data.tables import InputError
from emerge_ehr.meds import reader

from conftest import VARIABLES_YAML

T0 = dt.datetime(2150, 1, 1, 8, 0)
MICU = "Medical Intensive Care Unit (MICU)"
SETTINGS = {"min_age": 18, "min_hours": 48, "readmission_definition": "icu", "readmission_window_days": 30,
            "split_fractions": [0.7, 0.1, 0.2], "split_seed": 42}
TABLES = ("patients", "admissions", "icustays", "chartevents", "labevents", "notes")


def H(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def tiny_events(extensions: bool) -> list[dict]:
    """Two subjects. Subject 1: one admission with a 60-hour MICU stay, chart and lab values, a note; dies in the
    admission (discharge DIED). Subject 2: two admissions, the first with a stay that moves MICU -> SICU."""
    rows: list[dict] = []

    def ev(s, t, code, value=None, text=None, hadm=None, stay=None):
        row = {"subject_id": s, "time": t, "code": code, "numeric_value": value, "text_value": text}
        if extensions:
            row |= {"hadm_id": hadm, "icustay_id": stay}
        rows.append(row)

    ev(1, None, "GENDER//F")
    ev(1, dt.datetime(2090, 1, 1), meds.birth_code)                      # a year of birth (MEDS-Extract's form)
    ev(1, H(0), "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", hadm=11)
    ev(1, H(2), f"ICU_ADMISSION//{MICU}", hadm=11, stay=101)
    ev(1, H(3), "LAB//220045//bpm", 80.0, hadm=11, stay=101)
    ev(1, H(3), "LAB//223761//°F", 98.6, hadm=11, stay=101)
    ev(1, H(4), "LAB//220739//UNK", 4.0, "Spontaneously", hadm=11, stay=101)
    ev(1, H(5), "LAB//RESULT//50931//mg/dL", 123.0, hadm=11)
    ev(1, H(5), "LAB//SPECIMEN_COLLECTED//50931//STAT", hadm=11)         # no value, matched by no variable
    ev(1, H(6), "NOTE//Radiology", text="CHEST X-RAY: no acute process.", hadm=11)
    ev(1, H(62), f"ICU_DISCHARGE//{MICU}", hadm=11, stay=101)
    ev(1, H(70), meds.death_code)
    ev(1, H(70), "HOSPITAL_DISCHARGE//DIED", hadm=11)
    ev(2, None, "GENDER//M")
    ev(2, dt.datetime(2070, 6, 15, 12), meds.birth_code)                 # an exact birth time
    ev(2, H(0), "HOSPITAL_ADMISSION//ELECTIVE//UNK", hadm=21)
    ev(2, H(1), f"ICU_ADMISSION//{MICU}", hadm=21, stay=201)
    ev(2, H(1.5), "LAB//220045//bpm", 90.0, hadm=21, stay=201)
    ev(2, H(30), "ICU_DISCHARGE//Surgical Intensive Care Unit (SICU)", hadm=21, stay=201)
    ev(2, H(40), "HOSPITAL_DISCHARGE//HOME", hadm=21)
    ev(2, H(500), "HOSPITAL_ADMISSION//URGENT//UNK", hadm=22)
    ev(2, H(600), "HOSPITAL_DISCHARGE//UNK", hadm=22)
    return sorted(rows, key=lambda r: (r["subject_id"], r["time"] or dt.datetime.min))


def write_meds(root: Path, extensions: bool = True) -> Path:
    schema = meds.DataSchema.schema()
    if extensions:
        schema = schema.append(pa.field("hadm_id", pa.int64())).append(pa.field("icustay_id", pa.int64()))
    table = pa.Table.from_pylist(tiny_events(extensions), schema=schema)
    meds.DataSchema.validate(table)
    for split, subject in ((meds.train_split, 1), (meds.held_out_split, 2)):
        (root / "data" / split).mkdir(parents=True)
        pq.write_table(table.filter(pa.compute.equal(table["subject_id"], subject)), root / "data" / split / "0.parquet")
    return root


def convert_all(root: Path, out: Path) -> dict[str, pl.DataFrame]:
    for table in TABLES:
        reader.convert(root, table, out / f"{table}.parquet")
    return {table: pl.read_parquet(out / f"{table}.parquet") for table in TABLES}


@pytest.fixture(params=[True, False], ids=["extension-columns", "plain-meds"])
def converted(request, tmp_path) -> tuple[bool, dict[str, pl.DataFrame]]:
    root = write_meds(tmp_path / "meds", extensions=request.param)
    return request.param, convert_all(root, tmp_path / "parquet")


def test_every_table_has_the_canonical_schema(converted):
    _, out = converted
    for table, frame in out.items():
        assert dict(frame.schema) == tables.CANONICAL[table], table


def test_icu_stays_pair_admission_and_discharge(converted):
    extensions, out = converted
    stays = out["icustays"].sort("subject_id")
    assert stays.select("subject_id", "first_careunit", "last_careunit", "intime", "outtime").rows() == [
        (1, MICU, MICU, H(2), H(62)), (2, MICU, "Surgical Intensive Care Unit (SICU)", H(1), H(30))]
    if extensions:
        assert stays.select("stay_id", "hadm_id").rows() == [(101, 11), (201, 21)]
    else:
        # surrogates: minus the rank by (subject, time), never a real id; hadm_id from the enclosing admission
        assert stays.get_column("stay_id").to_list() == [-1, -2]
        assert stays.get_column("hadm_id").to_list() == out["admissions"].sort("subject_id", "admittime").get_column(
            "hadm_id").to_list()[:2]


def test_admissions_deaths_and_patients(converted):
    extensions, out = converted
    adm = out["admissions"].sort("subject_id", "admittime")
    assert adm.select("subject_id", "admittime", "dischtime", "deathtime", "hospital_expire_flag").rows() == [
        (1, H(0), H(70), H(70), 1), (2, H(0), H(40), None, 0), (2, H(500), H(600), None, 0)]
    assert adm.get_column("hadm_id").to_list() == ([11, 21, 22] if extensions else [-1, -2, -3])
    pat = out["patients"].sort("subject_id")
    assert pat.select("gender", "anchor_age", "anchor_year", "dob", "dod").rows() == [
        ("F", 0, 2090, None, H(70).date()), ("M", None, None, dt.datetime(2070, 6, 15, 12), None)]
    # the cohort's own age rule: admission year - year of birth, or time since an exact birth
    ages = stays_with_age(out["icustays"].lazy(), adm.lazy(), pat.lazy()).sort("subject_id").collect()
    assert ages.get_column("age").to_list() == [60.0, pytest.approx((H(1) - dt.datetime(2070, 6, 15, 12)).days / 365.2425)]


def test_chart_and_lab_events_from_the_variable_map(converted):
    extensions, out = converted
    chart = out["chartevents"].sort("charttime", "itemid")
    assert chart.select("subject_id", "itemid", "value", "valuenum", "valueuom").rows() == [
        (2, 220045, "90.0", 90.0, "bpm"), (1, 220045, "80.0", 80.0, "bpm"), (1, 223761, "98.6", 98.6, "°F"),
        (1, 220739, "Spontaneously", 4.0, None)]  # UNK is no unit; float32 98.6 read back as 98.6
    if extensions:
        assert chart.get_column("stay_id").to_list() == [201, 101, 101, 101]
    else:  # no stay id: the events stage places them by admission and time
        assert chart.get_column("stay_id").null_count() == 4
        assert chart.get_column("hadm_id").to_list() == [-2, -1, -1, -1]
    labs = out["labevents"]
    assert labs.select("subject_id", "charttime", "itemid", "valuenum", "valueuom").rows() == [
        (1, H(5), 50931, 123.0, "mg/dL")]
    assert out["notes"].select("note_id", "subject_id", "charttime", "category", "text").rows() == [
        ("meds-1", 1, H(6), "Radiology", "CHEST X-RAY: no acute process.")]


def test_the_workflow_runs_on_a_meds_dataset(tmp_path):
    """events, cohort and features on the converted tables: subject 1's stay is in, subject 2's (a transfer) not."""
    root = write_meds(tmp_path / "meds", extensions=False)
    work = tmp_path / "parquet"
    convert_all(root, work)
    p = {t: str(work / f"{t}.parquet") for t in TABLES}
    stages.events(p["chartevents"], p["labevents"], p["patients"], p["admissions"], p["icustays"],
                  str(VARIABLES_YAML), 48, SETTINGS, work / "events.parquet")
    stages.cohort(p["patients"], p["admissions"], p["icustays"], str(work / "events.parquet"), SETTINGS,
                  work / "cohort.parquet", work / "cohort.json")
    cohort = pl.read_parquet(work / "cohort.parquet")
    assert cohort.select("stay_id", "subject_id", "age", "sex", "mortality", "readmission").rows() == [
        (-1, 1, 60.0, "F", 1, 1)]  # died in hospital 8 h after the ICU out-time: both positive
    events = pl.read_parquet(work / "events.parquet")
    assert set(events.get_column("variable")) == {"heart_rate", "temperature", "gcs_eye", "glucose"}


def test_given_labels_replace_the_workflows_and_are_counted(tmp_path):
    root = write_meds(tmp_path / "meds", extensions=True)
    work = tmp_path / "parquet"
    convert_all(root, work)
    p = {t: str(work / f"{t}.parquet") for t in TABLES}
    stages.events(p["chartevents"], p["labevents"], p["patients"], p["admissions"], p["icustays"],
                  str(VARIABLES_YAML), 48, SETTINGS, work / "events.parquet")
    labels = tmp_path / "labels" / "mortality" / "train"
    labels.mkdir(parents=True)
    # as ACES writes them: an all-null integer_value column too; subject 1's stay (prediction at intime + 48 h)
    # and a row for no cohort stay (subject 2's transferred stay)
    pl.DataFrame({"subject_id": [1, 2], "prediction_time": [H(50), H(49)], "boolean_value": [False, True],
                  "integer_value": [None, None]}, schema_overrides={"integer_value": pl.Int64}).write_parquet(
        labels / "0.parquet")
    stages.cohort(p["patients"], p["admissions"], p["icustays"], str(work / "events.parquet"), SETTINGS,
                  work / "cohort.parquet", work / "cohort.json", {"mortality": str(labels.parent)}, 48)
    assert pl.read_parquet(work / "cohort.parquet").select("stay_id", "mortality", "readmission").rows() == [
        (101, 0, 1)]
    meta = json.loads((work / "cohort.json").read_text())
    assert meta["positives"] == {"mortality": 0, "readmission": 1}
    report = meta["meds_labels"]["mortality"]
    assert {k: v for k, v in report.items() if k != "path"} == {
        "rows": 2, "matched": 1, "agree": 0, "changed": 1, "positive_to_negative": 1, "negative_to_positive": 0,
        "not_at_risk_labelled": 0, "stays_without_label": 0, "labels_outside_cohort": 1}
    with pytest.raises(InputError, match="missing MEDS label column.*boolean_value"):
        pl.DataFrame({"subject_id": [1], "prediction_time": [H(50)]}).write_parquet(labels / "0.parquet")
        reader.read_labels(labels.parent)
    with pytest.raises(InputError, match="no such file"):
        reader.read_labels(tmp_path / "nowhere")


def test_missing_files_columns_and_bad_maps_are_named(tmp_path):
    with pytest.raises(InputError, match=r"no data files \(expected .*/data/<split>/<shard>.parquet\)"):
        reader.convert(tmp_path, "patients", tmp_path / "out.parquet")
    root = tmp_path / "meds"
    (root / "data" / "train").mkdir(parents=True)
    pl.DataFrame({"subject_id": [1], "timestamp": [T0], "code": ["X"]}).write_parquet(root / "data/train/0.parquet")
    with pytest.raises(InputError, match=r"train/0.parquet: missing MEDS column\(s\) time"):
        reader.convert(root, "patients", tmp_path / "out.parquet")
    pl.DataFrame({"subject_id": [1], "time": [T0], "code": ["X"]}).write_parquet(root / "data/train/0.parquet")
    with pytest.raises(InputError, match="no ICU_ADMISSION//\\* codes"):
        reader.convert(root, "icustays", tmp_path / "out.parquet")
    with pytest.raises(InputError, match="no code matches a chart variable"):
        reader.convert(root, "chartevents", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    bad = tmp_path / "map.yaml"
    bad.write_text("variables: {heart_rate: {chartevents: [1], labevents: [], regex: ['^LAB//(\\d+)//']}}\n")
    pl.DataFrame({"subject_id": [1], "time": [T0], "code": ["LAB//220045//bpm"]}).write_parquet(
        root / "data/train/0.parquet")
    with pytest.raises(InputError, match=r"map.yaml: code 'LAB//220045//bpm' gives itemid 220045, listed neither"):
        reader.convert(root, "chartevents", tmp_path / "out.parquet", variables=bad)
    bad.write_text("variables: {heart_rate: {regex: ['^LAB//(']}}\n")
    with pytest.raises(InputError, match="heart_rate: bad regex"):
        reader.convert(root, "chartevents", tmp_path / "out.parquet", variables=bad)
    with pytest.raises(InputError, match="MEDS variable map .*nowhere.yaml not found"):
        reader.convert(root, "chartevents", tmp_path / "out.parquet", variables=tmp_path / "nowhere.yaml")


# --- the MIMIC-IV demo: `kind: meds` on MEDS-Extract's output against `kind: mimic4` on the raw tables ------------


def workflow_stages(work: Path, convert) -> dict:
    """convert (via ``convert(table, out)``), events, cohort and timeseries, as the Snakefile runs them."""
    work.mkdir(parents=True, exist_ok=True)
    for table in TABLES[:-1]:
        convert(table, work / f"{table}.parquet")
    p = {t: str(work / f"{t}.parquet") for t in TABLES[:-1]}
    stages.events(p["chartevents"], p["labevents"], p["patients"], p["admissions"], p["icustays"],
                  str(VARIABLES_YAML), 48, SETTINGS, work / "events.parquet")
    stages.cohort(p["patients"], p["admissions"], p["icustays"], str(work / "events.parquet"), SETTINGS,
                  work / "cohort.parquet", work / "cohort.json")
    stages.build_timeseries(str(work / "events.parquet"), str(work / "cohort.parquet"), str(VARIABLES_YAML), 48,
                            work / "timeseries.parquet", work / "features.npy", work / "feature_stats.json")
    return {"cohort": pl.read_parquet(work / "cohort.parquet"), "meta": json.loads((work / "cohort.json").read_text()),
            "events": pl.read_parquet(work / "events.parquet"), "features": np.load(work / "features.npy"),
            "stats": json.loads((work / "feature_stats.json").read_text())}


def labs_at_storetime(mimic: Path, out: Path) -> None:
    """The demo's labevents converted as kind mimic4 does, with storetime as charttime (MEDS-Extract's lab time)."""
    path = mimic / "hosp" / "labevents.csv.gz"
    frame = tables.finalise(tables.canonical_frame(path, "mimic4", "labevents"), "mimic4", "labevents").collect()
    stored = pl.read_csv(path, infer_schema=False).select(tables._parse(pl.col("storetime"), tables.TIME))
    frame.with_columns(stored.to_series().alias("charttime")).write_parquet(out)


def changed_cells(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ~((a == b) | (np.isnan(a) & np.isnan(b)))


@pytest.mark.slow
def test_meds_extract_output_as_input_reproduces_the_mimic4_run(tmp_path, demo_meds):
    from conftest import MIMIC4_DEMO

    started = time.perf_counter()
    ours = workflow_stages(tmp_path / "meds", lambda table, out: reader.convert(demo_meds, table, out))
    print(f"kind meds, convert to features: {time.perf_counter() - started:.1f} s")
    mimic = workflow_stages(tmp_path / "mimic4",
                            lambda table, out: stages.convert(str(MIMIC4_DEMO), "mimic4", table, out))
    # converted tables: the same stays, admissions and patients
    for table in ("patients", "admissions", "icustays"):
        a, b = (pl.read_parquet(tmp_path / kind / f"{table}.parquet") for kind in ("meds", "mimic4"))
        assert a.height == b.height, table
    stays = pl.read_parquet(tmp_path / "meds" / "icustays.parquet").height
    assert stays == 140

    # the cohort: identical, row for row (stays by stay_id = subject + intime, labels, split), and its metadata
    assert ours["cohort"].equals(mimic["cohort"])
    assert ours["meta"] == mimic["meta"]
    assert (ours["meta"]["stays"], ours["meta"]["patients"], ours["meta"]["positives"]) == (
        53, 47, {"mortality": 8, "readmission": 10})

    # chart events in the window: identical but for MIMIC's exact duplicate rows, which MEDS-Extract merges
    key = ["stay_id", "charttime", "variable", "itemid", "value", "category"]

    def chart(run):
        return run["events"].filter(pl.col("source") == "chartevents").select(key)

    assert chart(ours).unique().sort(key).equals(chart(mimic).unique().sort(key))
    assert chart(mimic).height - chart(ours).height == 1
    # lab events: MEDS-Extract times a lab result at its storetime, MIMIC's labevents (kind mimic4) at charttime
    labs = [run["events"].filter(pl.col("source") == "labevents") for run in (ours, mimic)]
    assert (labs[0].height, labs[1].height) == (675, 672)
    assert labs[0].join(labs[1], on=key, how="anti", nulls_equal=True).height == 674
    # ...so the features differ in the lab-fed variables only (glucose, pH, SpO2: some of their values are
    # charted in the lab too)
    changed = changed_cells(ours["features"], mimic["features"])
    names = np.array(ours["stats"]["feature_names"])
    assert sorted(set(names[np.nonzero(changed)[2]])) == ["glucose", "ph", "spo2"]
    assert changed.sum() == 5093

    # with the mimic4 run's lab times taken at storetime, the feature array is bit-identical
    stored = tmp_path / "mimic4-storetime"
    stored.mkdir()
    for table in TABLES[:-1]:
        if table != "labevents":
            shutil.copy(tmp_path / "mimic4" / f"{table}.parquet", stored / f"{table}.parquet")

    def copy_or_store(table, out):
        if table == "labevents":
            labs_at_storetime(MIMIC4_DEMO, out)

    at_store = workflow_stages(stored, copy_or_store)
    assert at_store["cohort"].equals(ours["cohort"])
    assert np.array_equal(at_store["features"], ours["features"], equal_nan=True)
    assert at_store["stats"] == ours["stats"]


@pytest.mark.slow
def test_aces_labels_given_to_the_meds_input_agree_with_the_workflows(tmp_path, demo_meds):
    """ACES's labels (config/tasks) on MEDS-Extract's output, given as `labels:`: every cohort stay is matched and
    none changes; the ACES rows left over are the stays with a care-unit transfer (docs/meds.md)."""
    from emerge_ehr.meds import tools

    labels = {task: str(tools.aces_labels(tools.TASKS_DIR / f"{task}.yaml", demo_meds, tmp_path / "labels")[0].parents[1])
              for task in ("mortality", "readmission")}
    work = tmp_path / "meds"
    work.mkdir()
    for table in TABLES[:-1]:
        reader.convert(demo_meds, table, work / f"{table}.parquet")
    p = {t: str(work / f"{t}.parquet") for t in TABLES[:-1]}
    stages.events(p["chartevents"], p["labevents"], p["patients"], p["admissions"], p["icustays"],
                  str(VARIABLES_YAML), 48, SETTINGS, work / "events.parquet")
    stages.cohort(p["patients"], p["admissions"], p["icustays"], str(work / "events.parquet"), SETTINGS,
                  work / "cohort.parquet", work / "cohort.json", labels, 48)
    meta = json.loads((work / "cohort.json").read_text())
    strip = lambda report: {k: v for k, v in report.items() if k != "path"}  # noqa: E731
    assert strip(meta["meds_labels"]["mortality"]) == {
        "rows": 62, "matched": 53, "agree": 53, "changed": 0, "positive_to_negative": 0, "negative_to_positive": 0,
        "not_at_risk_labelled": 0, "stays_without_label": 0, "labels_outside_cohort": 9}
    assert strip(meta["meds_labels"]["readmission"]) == {
        "rows": 54, "matched": 47, "agree": 47, "changed": 0, "positive_to_negative": 0, "negative_to_positive": 0,
        "not_at_risk_labelled": 0, "stays_without_label": 6, "labels_outside_cohort": 7}
    assert meta["positives"] == {"mortality": 8, "readmission": 10}


@pytest.mark.slow
def test_snakemake_runs_a_meds_dataset_end_to_end(tmp_path, demo_meds):
    """The real workflow with `kind: meds` (default variable map) on MEDS-Extract's demo output, through the whole
    default target: cohort, features, knowledge (a fixture graph), training, metrics, and the MEDS export of the
    cohort and its predictions, which meds-evaluation scores as the workflow does."""
    from meds_evaluation.evaluate import evaluate_binary_classification
    from workflow_helpers import load_config, snakemake

    # the knowledge as the summary text: the LLM's summaries read the same context whatever the input format, and
    # have their own workflow tests (tests/test_llm_workflow.py, tests/test_no_notes.py)
    config = load_config("mimic4-demo.yaml", tmp_path) | {
        "datasets": {"meds_demo": {"kind": "meds", "root": str(demo_meds)}}, "summaries": {"method": ["knowledge"]}}
    snakemake(tmp_path, config)
    results = tmp_path / "results/meds_demo"
    meta = json.loads((results / "cohort.json").read_text())
    assert (meta["stays"], meta["patients"], meta["positives"]) == (53, 47, {"mortality": 8, "readmission": 10})
    assert np.load(results / "features.npy").shape == (53, 48, 61)
    assert "MEDS icustays (3 data file(s))" in (tmp_path / "logs/meds_demo/convert/icustays.log").read_text()
    assert "| mortality | gru |" in (results / "metrics/summary.md").read_text()
    # meds.export is on for a real dataset by default: the MEDS dataset read as input is written back out
    assert (results / "meds/metadata/dataset.json").exists()
    predictions = pl.read_parquet(results / "meds/predictions/mortality/gru/seed0.parquet")
    ours = json.loads((results / "metrics/mortality/gru.json").read_text())["metrics"]["auroc"]["value"]
    theirs = evaluate_binary_classification(predictions)["samples_equally_weighted"]["roc_auc_score"]
    assert theirs == pytest.approx(ours, abs=0.01)  # float32 probabilities in the MEDS file (test_meds_export)
