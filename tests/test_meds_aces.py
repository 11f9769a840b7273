"""The ACES task configs (config/tasks/) and MEDS-Extract's offline MIMIC-IV spec (config/meds/), run from the MEDS
tool environment (.venv-meds, `make meds-tools`; docs/meds.md).

On a hand-made MEDS dataset ACES gives exactly the designed labels; on the MIMIC-IV demo, MEDS-Extract + ACES give
the same stays and labels as the workflow's own cohort, once the one criterion ACES cannot express (no care-unit
transfer) is applied.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emerge_ehr import stages
from emerge_ehr.data.cohort import prediction_time
from emerge_ehr.meds import tools

from conftest import REPO, VARIABLES_YAML

MORTALITY = tools.TASKS_DIR / "mortality.yaml"
READMISSION = tools.TASKS_DIR / "readmission.yaml"
T0 = dt.datetime(2150, 1, 1, 8, 0)
MICU = "Medical Intensive Care Unit (MICU)"
SICU = "Surgical Intensive Care Unit (SICU)"


def H(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


# --- a hand-made MEDS dataset -------------------------------------------------------------------------------------


def tiny_events() -> list[dict]:
    """Eleven subjects; the comments give each stay's designed labels (mortality predicted at ICU admission + 48 h,
    readmission at the ICU out-time; 'no row' = not in the task)."""
    rows: list[dict] = []

    def ev(s, t, code, value=None):
        rows.append({"subject_id": s, "time": t, "code": code, "numeric_value": value, "text_value": None})

    def admission(s, adm, disch, location="HOME"):
        ev(s, H(adm), "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM")
        ev(s, H(disch), f"HOSPITAL_DISCHARGE//{location}")

    def icu(s, t_in, t_out, first=MICU, last=MICU):
        ev(s, H(t_in), f"ICU_ADMISSION//{first}")
        for k in range(int(t_in) + 1, int(t_out), 6):
            ev(s, H(k), "LAB//220045//bpm", 80.0)
            ev(s, H(k + 1), "LAB//RESULT//50912//mg/dL", 1.0)
        ev(s, H(t_out), f"ICU_DISCHARGE//{last}")

    for s in range(1, 12):
        ev(s, None, "GENDER//F")
        ev(s, dt.datetime(2090, 1, 1), meds.birth_code)
    admission(1, 0, 200); icu(1, 2, 74)                          # survives: mortality F, readmission F
    admission(2, 0, 62, "DIED"); icu(2, 2, 62); ev(2, H(60), meds.death_code)   # dies in the ICU: T; no readmission row
    admission(3, 0, 100); icu(3, 2, 26)                          # 24 h in the ICU: no rows
    admission(4, 0, 120); icu(4, 2, 52)                          # ICU again 10 days after the out-time: readmission T
    admission(4, 290, 400); icu(4, 292, 350)                     #   and that stay: F, F
    admission(5, 0, 250, "DIED"); icu(5, 2, 102); ev(5, H(250), meds.death_code)  # ward death 6 days after: T, T
    admission(6, 0, 160); icu(6, 2, 60); icu(6, 80, 140)         # two ICU stays in one admission: no rows
    # ICU out-time 90 s after the hospital discharge (as in MIMIC); next admission 40 days later: F, F
    admission(7, 0, 74); icu(7, 2, 74 + 90 / 3600)
    admission(7, 960, 1100); icu(7, 962, 1034)                   #   and that stay: F, F
    admission(8, 0, 100); icu(8, 2, 74)                          # ICU again exactly 30 days after: readmission T
    admission(8, 790, 900); icu(8, 794, 850)                     #   and that stay: F, F
    admission(9, 0, 120); icu(9, 2, 80, first=MICU, last=SICU)   # unit transfer: ACES keeps it (the caller filters)
    admission(10, 0, 80, "DIED"); icu(10, 2, 80); ev(10, H(80), meds.death_code)  # death at the out-time: T; no row
    admission(11, 0, 100); icu(11, 2, 50)                        # exactly 48 h in the ICU: kept (los >= 48 h): F, F
    return sorted(rows, key=lambda r: (r["subject_id"], r["time"] or dt.datetime.min))


MORTALITY_EXPECTED = {
    (1, H(50)): False, (2, H(50)): True, (4, H(50)): False, (4, H(340)): False, (5, H(50)): True,
    (7, H(50)): False, (7, H(1010)): False, (8, H(50)): False, (8, H(842)): False, (9, H(50)): False,
    (10, H(50)): True, (11, H(50)): False,
}
READMISSION_EXPECTED = {
    (1, H(74)): False, (4, H(52)): True, (4, H(350)): False, (5, H(102)): True,
    (7, H(74) + dt.timedelta(seconds=90)): False, (7, H(1034)): False, (8, H(74)): True, (8, H(850)): False,
    (9, H(80)): False, (11, H(50)): False,
}


def write_tiny_meds(root: Path) -> Path:
    """The dataset in MEDS 0.4 layout (two shards, metadata), each file checked with the `meds` schemas."""
    table = pa.Table.from_pylist(tiny_events(), schema=meds.DataSchema.schema())
    meds.DataSchema.validate(table)
    split_of = {s: meds.train_split if s <= 5 else meds.held_out_split for s in range(1, 12)}
    for split in (meds.train_split, meds.held_out_split):
        (root / meds.data_subdirectory / split).mkdir(parents=True)
        subjects = pa.array([s for s, sp in split_of.items() if sp == split], pa.int64())
        pq.write_table(table.filter(pa.compute.is_in(table["subject_id"], subjects)),
                       root / meds.data_subdirectory / split / "0.parquet")
    (root / "metadata").mkdir()
    codes = pa.Table.from_pylist([{"code": c, "description": None, "parent_codes": None}
                                  for c in sorted(set(table["code"].to_pylist()))],
                                 schema=meds.CodeMetadataSchema.schema())
    meds.CodeMetadataSchema.validate(codes)
    pq.write_table(codes, root / meds.code_metadata_filepath)
    splits = pa.Table.from_pylist([{"subject_id": s, "split": sp} for s, sp in split_of.items()],
                                  schema=meds.SubjectSplitSchema.schema())
    meds.SubjectSplitSchema.validate(splits)
    pq.write_table(splits, root / meds.subject_splits_filepath)
    metadata = {"dataset_name": "tiny", "dataset_version": "0", "etl_name": "tests/test_meds_aces.py",
                "etl_version": "0", "meds_version": meds.__version__, "created_at": dt.datetime.now().isoformat()}
    meds.DatasetMetadataSchema.validate(metadata)
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(metadata))
    return root


def as_dict(labels: pl.DataFrame) -> dict:
    keys = zip(labels.get_column("subject_id").to_list(), labels.get_column("prediction_time").to_list())
    return dict(zip(keys, labels.get_column("boolean_value").to_list()))


def test_task_configs_give_the_designed_labels_on_a_hand_made_dataset(tmp_path, tool_venv):
    root = write_tiny_meds(tmp_path / "meds")
    mortality = tools.read_aces_labels(tools.aces_labels(MORTALITY, root, tmp_path / "labels"))
    readmission = tools.read_aces_labels(tools.aces_labels(READMISSION, root, tmp_path / "labels"))
    assert as_dict(mortality) == MORTALITY_EXPECTED
    assert as_dict(readmission) == READMISSION_EXPECTED
    assert mortality.height == mortality.unique(["subject_id", "prediction_time"]).height


def test_a_failing_tool_raises_with_its_last_lines(tmp_path, tool_venv):
    root = write_tiny_meds(tmp_path / "meds")
    broken = tmp_path / "broken.yaml"
    broken.write_text(MORTALITY.read_text().replace("trigger: icu_admission", "trigger: no_such_predicate"))
    with pytest.raises(tools.ToolError, match=r"aces-cli failed with exit code \d+ \(full output in .*\); its last"):
        tools.aces_labels(broken, root, tmp_path / "labels", log=tmp_path / "aces.log")
    with pytest.raises(tools.ToolError, match="is not a MIMIC-IV folder: no hosp/ or icu/"):
        tools.meds_extract(tmp_path, tmp_path / "out")


def test_missing_tool_environment_is_named(tmp_path):
    with pytest.raises(tools.ToolError, match=r"no .*/bin/python\. Build it with `make meds-tools`"):
        tools.tool_venv(tmp_path / "nowhere")


def check_generated(python: str | Path, script: str) -> None:
    result = subprocess.run([str(python), str(REPO / "config" / "meds" / script), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_variable_map_is_up_to_date_with_variables_yaml():
    check_generated(sys.executable, "make_variable_map.py")


def test_offline_extract_spec_is_up_to_date_with_mimic_iv_meds(tool_venv):
    check_generated(tool_venv / "bin" / "python", "make_extract_spec.py")


# --- the MIMIC-IV demo: MEDS-Extract + ACES against the workflow's own cohort --------------------------------------


def workflow_cohort(root: Path, work: Path) -> tuple[pl.DataFrame, dict]:
    """The workflow's cohort for `kind: mimic4`, through its stage functions (convert, events, cohort)."""
    settings = {"min_age": 18, "min_hours": 48, "readmission_definition": "icu", "readmission_window_days": 30,
                "split_fractions": [0.7, 0.1, 0.2], "split_seed": 42}
    for table in ("patients", "admissions", "icustays", "chartevents", "labevents"):
        stages.convert(str(root), "mimic4", table, work / f"{table}.parquet")
    p = {t: str(work / f"{t}.parquet") for t in ("patients", "admissions", "icustays", "chartevents", "labevents")}
    stages.events(p["chartevents"], p["labevents"], p["patients"], p["admissions"], p["icustays"],
                  str(VARIABLES_YAML), 48, settings, work / "events.parquet")
    stages.cohort(p["patients"], p["admissions"], p["icustays"], str(work / "events.parquet"), settings,
                  work / "cohort.parquet", work / "cohort.json")
    return pl.read_parquet(work / "cohort.parquet"), json.loads((work / "cohort.json").read_text())


@pytest.mark.slow
def test_meds_extract_and_aces_on_the_demo_reproduce_the_workflow_cohort(tmp_path, demo_meds):
    from conftest import MIMIC4_DEMO

    for shard in (demo_meds / "data").rglob("*.parquet"):
        meds.DataSchema.validate(meds.DataSchema.align(pq.read_table(shard).select(meds.DataSchema.columns())))
    started = time.perf_counter()
    mortality = tools.read_aces_labels(tools.aces_labels(MORTALITY, demo_meds, tmp_path / "labels"))
    readmission = tools.read_aces_labels(tools.aces_labels(READMISSION, demo_meds, tmp_path / "labels"))
    print(f"ACES, both tasks: {time.perf_counter() - started:.1f} s")
    cohort, meta = workflow_cohort(MIMIC4_DEMO, tmp_path / "workflow")

    stays = tools.icu_stays(demo_meds)
    assert stays.height == 140
    # ACES's rows, each tied to its ICU stay (mortality by intime + 48 h, readmission by the ICU out-time; raises
    # unless each row has exactly one stay)
    mortality = tools.label_stays(mortality, stays, "mortality")
    readmission = tools.label_stays(readmission, stays, "readmission")
    assert (mortality.height, readmission.height) == (62, 54)  # before the no-transfer filter
    mortality, readmission = tools.no_transfer(mortality), tools.no_transfer(readmission)

    # the same stays, the same prediction times (the workflow's cohort.prediction_time), the same labels
    def ours(task: str) -> dict:
        rows = cohort.select("subject_id", prediction_time(task, 48, "icu"), task).iter_rows()
        return {(subject, when): bool(label) for subject, when, label in rows if label is not None}

    ours_mortality, ours_readmission = ours("mortality"), ours("readmission")
    assert as_dict(mortality.select("subject_id", "prediction_time", "boolean_value")) == ours_mortality
    assert as_dict(readmission.select("subject_id", "prediction_time", "boolean_value")) == ours_readmission
    assert sorted(mortality.get_column("stay_id")) == sorted(cohort.get_column("stay_id"))

    # and docs/real-data.md's hand-checked counts
    assert (mortality.height, mortality.get_column("subject_id").n_unique()) == (53, 47)
    assert (meta["stays"], meta["patients"]) == (53, 47)
    assert mortality.get_column("boolean_value").sum() == 8
    assert (readmission.height, readmission.get_column("boolean_value").sum()) == (47, 10)
    assert mortality.height - readmission.height == 6 == meta["not_at_risk"]["readmission"]


@pytest.mark.slow
def test_variable_map_finds_the_variables_in_the_demo(demo_meds):
    """Each of config/meds/mimic4_variables.yaml's patterns matches codes with values in MEDS-Extract's output."""
    import yaml

    spec = yaml.safe_load((REPO / "config" / "meds" / "mimic4_variables.yaml").read_text())
    codes = (pl.scan_parquet(demo_meds / "data" / "*" / "*.parquet").filter(pl.col("code").str.starts_with("LAB//"))
             .group_by("code").agg(pl.col("numeric_value").is_not_null().sum().alias("numeric")).collect())
    found = {}
    for name, entry in spec["variables"].items():
        matched = codes.filter(pl.any_horizontal([pl.col("code").str.contains(p) for p in entry["regex"]]))
        found[name] = int(matched.get_column("numeric").sum() or 0)
        items = {int(c.split("//")[-2]) for c in matched.get_column("code")}
        assert items <= set(entry["chartevents"]) | set(entry["labevents"]), name
    # gcs_total is derived from its parts; the demo's capillary refill has no values (see the map's header)
    assert {name for name, n in found.items() if n == 0} == {"gcs_total", "capillary_refill_rate"}
    assert codes.filter(pl.col("code").str.contains("SPECIMEN")).height > 0  # present, and matched by no pattern
