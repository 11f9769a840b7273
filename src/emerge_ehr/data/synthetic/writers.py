"""Writing the synthetic database with MIMIC-III or MIMIC-IV file names, columns and formats."""
from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.data.synthetic.conditions import CONDITIONS, DAY, HOUR
from emerge_ehr.data.synthetic.population import Cohort
from emerge_ehr.data.synthetic.vocabulary import CAREUNITS3, CAREUNITS4

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"




def _dt(secs, valid=None, unit: str = "datetime") -> pl.Series:
    """Seconds since 1970 as a polars Datetime (or Date), null where `valid` is False."""
    s = pl.Series(np.asarray(secs, dtype="int64") * 1000).cast(pl.Datetime("ms"))
    if unit == "date":
        s = s.dt.date()
    if valid is not None:
        s = pl.select(pl.when(pl.Series(np.asarray(valid, bool))).then(s)).to_series()
    return s


def _write_csv_gz(df: pl.DataFrame, path: Path) -> int:
    """Gzip CSV with MIMIC's timestamp format; gzip mtime 0 keeps the bytes reproducible."""
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    df.write_csv(buf, datetime_format=DATETIME_FORMAT, date_format="%Y-%m-%d")
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=2, mtime=0))
    return df.height


HEADER_CASES = ("as_released", "lower", "upper")


def column_case(layout: str, setting: str) -> Callable[[str], str]:
    """The case of column names: as PhysioNet releases each layout (MIMIC-III upper, MIMIC-IV lower), or one
    forced, as in the MIMIC-III demo and in Postgres or BigQuery exports (lower) or hand-made extracts."""
    if setting not in HEADER_CASES:
        raise ValueError(f"header_case must be one of {', '.join(HEADER_CASES)}, not {setting!r}")
    if setting == "as_released":
        return str.upper if layout == "mimic3" else str.lower
    return str.upper if setting == "upper" else str.lower


def write_tables(tables: dict[str, pl.DataFrame], out: Path, case: Callable[[str], str]) -> dict[str, int]:
    """Each table as ``out/<name>.csv.gz`` with its column names in ``case``; returns the rows per table."""
    return {name: _write_csv_gz(df.rename(case), out / f"{name}.csv.gz") for name, df in tables.items()}


def _pick(rng, options, n: int, p=None) -> np.ndarray:
    """n draws from a tuple of strings (None allowed), as an object array."""
    return np.array(options, dtype=object)[rng.choice(len(options), n, p=p)]


def _strings(values) -> pl.Series:
    """A String series from an array that may hold None (numpy object arrays confuse inference)."""
    return pl.Series(list(values), dtype=pl.String)


def _minute(secs: np.ndarray) -> np.ndarray:
    return (np.asarray(secs) // 60 * 60).astype("int64")


def _event_times_abs(st: dict, frame: pl.DataFrame, rng) -> tuple[np.ndarray, np.ndarray]:
    """Absolute charttime (whole minutes) and storetime of chart rows."""
    stay = frame["stay"].to_numpy()
    chart = _minute(st["intime"][stay] + frame["t"].to_numpy() * HOUR)
    return chart, chart + rng.integers(60, 90 * 60, stay.size)


def _admission_extras(rng, cohort: Cohort) -> dict:
    """Admission columns that are pure bookkeeping (type, locations, ED times, insurance ...)."""
    adm = cohort.admissions
    n = adm["admittime"].size
    ed = ~adm["elective"] & (rng.random(n) < 0.8)
    edreg = adm["admittime"] - (rng.uniform(1, 9, n) * HOUR).astype("int64")
    return {"ed": ed, "edreg": edreg, "edout": adm["admittime"] + (rng.uniform(0.1, 1.5, n) * HOUR).astype("int64"),
            "home": rng.choice(4, n, p=[0.45, 0.3, 0.17, 0.08]), "ins": rng.integers(0, 3, n),
            "marital": rng.choice(5, n, p=[0.45, 0.3, 0.12, 0.08, 0.05]), "english": rng.random(n) < 0.9,
            "loc": rng.choice(4, n, p=[0.55, 0.2, 0.15, 0.1]), "religion": rng.integers(0, 5, n)}


def mimic4_tables(rng, cohort: Cohort, chart, labs, notes) -> dict[str, pl.DataFrame]:
    """hosp/, icu/ and note/ tables of MIMIC-IV v2 / MIMIC-IV-Note."""
    pat, adm, st = cohort.patients, cohort.admissions, cohort.stays
    sid, hid, stid = pat["subject_id"], adm["hadm_id"], st["stay_id"]
    x = _admission_extras(rng, cohort)
    groups = np.array(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"])
    rows = {}
    rows["hosp/patients"] = pl.DataFrame({
        "subject_id": sid, "gender": pat["gender"], "anchor_age": pat["anchor_age"], "anchor_year": pat["anchor_year"],
        "anchor_year_group": groups[pat["year_group"]], "dod": _dt(pat["dod"], pat["dod"] >= 0, "date")}).sort("subject_id")
    n = hid.size
    adm_type = np.where(adm["elective"], _pick(rng, ("ELECTIVE", "SURGICAL SAME DAY ADMISSION"), n),
                        _pick(rng, ("EW EMER.", "URGENT", "DIRECT EMER.", "OBSERVATION ADMIT"), n, [0.6, 0.2, 0.1, 0.1]))
    home = np.array(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB"], dtype=object)[x["home"]]
    rows["hosp/admissions"] = pl.DataFrame({
        "subject_id": sid[adm["patient"]], "hadm_id": hid, "admittime": _dt(adm["admittime"]),
        "dischtime": _dt(adm["dischtime"]), "deathtime": _dt(adm["deathtime"], adm["died"]),
        "admission_type": adm_type, "admit_provider_id": np.char.add("P", rng.integers(10000, 99999, n).astype(str)),
        "admission_location": np.where(x["ed"], "EMERGENCY ROOM", np.array(
            ["PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL", "WALK-IN/SELF REFERRAL", "CLINIC REFERRAL"])[x["loc"]]),
        "discharge_location": pl.Series(np.where(adm["died"], "DIED", home), dtype=pl.String),
        "insurance": np.array(["Medicare", "Medicaid", "Other"])[x["ins"]],
        "language": np.where(x["english"], "ENGLISH", "?"),
        "marital_status": _strings(np.array(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", None], dtype=object)[x["marital"]]),
        "race": np.array(["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER",
                          "UNKNOWN", "WHITE - OTHER EUROPEAN"])[pat["race"][adm["patient"]]],
        "edregtime": _dt(x["edreg"], x["ed"]), "edouttime": _dt(x["edout"], x["ed"]),
        "hospital_expire_flag": adm["died"].astype(int)}).sort("subject_id", "admittime")
    units = np.array(CAREUNITS4)
    rows["icu/icustays"] = pl.DataFrame({
        "subject_id": sid[st["patient"]], "hadm_id": hid[st["adm"]], "stay_id": stid,
        "first_careunit": units[st["first_unit"]], "last_careunit": units[st["last_unit"]],
        "intime": _dt(st["intime"]), "outtime": _dt(st["outtime"]),
        "los": ((st["outtime"] - st["intime"]) / DAY).round(4)}).sort("subject_id", "intime")
    stay = chart["stay"].to_numpy()
    charttime, storetime = _event_times_abs(st, chart, rng)
    rows["icu/chartevents"] = pl.DataFrame({
        "subject_id": sid[st["patient"][stay]], "hadm_id": hid[st["adm"][stay]], "stay_id": stid[stay],
        "caregiver_id": rng.integers(10000, 99999, stay.size), "charttime": _dt(charttime),
        "storetime": _dt(storetime), "itemid": chart["itemid"], "value": chart["value"],
        "valuenum": chart["valuenum"], "valueuom": chart["valueuom"].replace("", None), "warning": chart["warning"],
    }).sort("subject_id", "charttime", "stay_id", "itemid", maintain_order=True)
    rows["hosp/labevents"] = _labs_frame(rng, cohort, labs, sid, hid, mimic3=False)
    rows["note/radiology"], rows["note/discharge"] = _notes4(cohort, notes)
    return rows


def _labs_frame(rng, cohort: Cohort, labs: pl.DataFrame, sid, hid, mimic3: bool) -> pl.DataFrame:
    """labevents / LABEVENTS rows, time-ordered per patient."""
    adm = cohort.admissions
    a = labs["adm"].to_numpy() if "adm" in labs.columns else labs["stay"].to_numpy()
    charttime = _minute(adm["admittime"][a] + labs["t"].to_numpy() * HOUR)
    inpatient = ~labs["outpatient"].to_numpy()
    n = a.size
    base = pl.DataFrame({"subject_id": sid[adm["patient"][a]], "hadm_id": pl.Series(np.where(inpatient, hid[a], 0)),
                         "itemid": labs["itemid"], "charttime": _dt(charttime), "value": labs["value"],
                         "valuenum": labs["valuenum"], "valueuom": labs["valueuom"], "flag": labs["flag"]})
    base = base.with_columns(hadm_id=pl.when(pl.Series(inpatient)).then(pl.col("hadm_id")))
    if mimic3:
        base = base.sort("subject_id", "charttime", "itemid", maintain_order=True)
        return base.select(pl.int_range(1, n + 1).alias("ROW_ID"), *[pl.col(c).alias(c.upper()) for c in base.columns])
    base = base.with_columns(specimen_id=pl.Series(rng.integers(1_000_000, 99_999_999, n)),
                             order_provider_id=_strings(np.where(rng.random(n) < 0.6, np.char.add(
                                 "P", rng.integers(10000, 99999, n).astype(str)), None)),
                             storetime=_dt(charttime + rng.integers(1800, 6 * HOUR, n)),
                             ref_range_lower=labs["ref_range_lower"], ref_range_upper=labs["ref_range_upper"],
                             priority=_strings(_pick(rng, ("STAT", "ROUTINE", None), n, [0.5, 0.4, 0.1])),
                             comments=pl.lit(None, pl.String))
    base = base.sort("subject_id", "charttime", "itemid", maintain_order=True)
    return base.select(pl.int_range(1, n + 1).alias("labevent_id"), "subject_id", "hadm_id", "specimen_id", "itemid",
                       "order_provider_id", "charttime", "storetime", "value", "valuenum", "valueuom",
                       "ref_range_lower", "ref_range_upper", "flag", "priority", "comments")


def _notes4(cohort: Cohort, notes: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """MIMIC-IV-Note radiology and discharge tables with per-patient note_seq and note_id."""
    adm, pat = cohort.admissions, cohort.patients
    out = []
    for kind in ("RR", "DS"):
        sel = [nt for nt in notes if nt["kind"] == kind]
        a = np.array([nt["adm"] for nt in sel], dtype="int64")
        subject = pat["subject_id"][adm["patient"][a]]
        df = pl.DataFrame({"subject_id": subject, "hadm_id": adm["hadm_id"][a], "note_type": [kind] * len(sel),
                           "charttime": _dt([nt["time"] for nt in sel]), "storetime": _dt([nt["store"] for nt in sel]),
                           "text": [nt["text"] for nt in sel]}, schema_overrides={"note_type": pl.String})
        df = df.sort("subject_id", "charttime", maintain_order=True).with_columns(
            note_seq=pl.int_range(1, pl.len() + 1).over("subject_id") + (1 if kind == "RR" else 10))
        df = df.with_columns(note_id=pl.format("{}-{}-{}", "subject_id", "note_type", "note_seq"))
        out.append(df.select("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"))
    return out[0], out[1]


def mimic3_tables(rng, cohort: Cohort, chart, labs, notes) -> dict[str, pl.DataFrame]:
    """The MIMIC-III v1.4 tables (upper-case names, ROW_ID first, DBSOURCE per ICU stay)."""
    pat, adm, st = cohort.patients, cohort.admissions, cohort.stays
    sid, hid, stid = pat["subject_id3"], adm["hadm_id3"], st["stay_id3"]
    x = _admission_extras(rng, cohort)
    rows = {}
    first = np.unique(adm["patient"], return_index=True)[1]
    first_admit = np.zeros(pat["n"], "int64")
    first_admit[adm["patient"][first]] = adm["admittime"][first]
    first_age = np.zeros(pat["n"])
    first_age[adm["patient"][first]] = adm["age"][first]
    years = np.where(pat["anchor_age"] >= 89, 300, first_age) + rng.uniform(0, 1, pat["n"])
    dob = first_admit - (years * 365.25 * DAY).astype("int64")
    dob -= dob % DAY
    dead, dod = pat["dod"] >= 0, pat["dod"] - pat["dod"] % DAY
    died_hosp = np.zeros(pat["n"], bool)
    died_hosp[adm["patient"][adm["died"]]] = True
    rows["PATIENTS"] = pl.DataFrame({
        "SUBJECT_ID": sid, "GENDER": pat["gender"], "DOB": _dt(dob), "DOD": _dt(dod, dead),
        "DOD_HOSP": _dt(dod, died_hosp), "DOD_SSN": _dt(dod, dead & (~died_hosp | (rng.random(pat["n"]) < 0.5))),
        "EXPIRE_FLAG": dead.astype(int)}).sort("SUBJECT_ID")
    n = hid.size
    has_chart = np.zeros(n, bool)
    has_chart[st["adm"][np.unique(chart["stay"].to_numpy())]] = True
    diag = np.array([next((c.name.upper() for i, c in enumerate(CONDITIONS) if row[i] and not c.chronic), "CHEST PAIN")
                     for row in adm["conds"]], dtype=object)
    home = np.array(["HOME", "HOME HEALTH CARE", "SNF", "REHAB/DISTINCT PART HOSP"], dtype=object)[x["home"]]
    rows["ADMISSIONS"] = pl.DataFrame({
        "SUBJECT_ID": sid[adm["patient"]], "HADM_ID": hid, "ADMITTIME": _dt(adm["admittime"]),
        "DISCHTIME": _dt(adm["dischtime"]), "DEATHTIME": _dt(adm["deathtime"], adm["died"]),
        "ADMISSION_TYPE": np.where(adm["elective"], "ELECTIVE", _pick(rng, ("EMERGENCY", "URGENT"), n, [0.88, 0.12])),
        "ADMISSION_LOCATION": np.where(x["ed"], "EMERGENCY ROOM ADMIT", np.array(
            ["PHYS REFERRAL/NORMAL DELI", "TRANSFER FROM HOSP/EXTRAM", "CLINIC REFERRAL/PREMATURE",
             "TRANSFER FROM SKILLED NUR"])[x["loc"]]),
        "DISCHARGE_LOCATION": pl.Series(np.where(adm["died"], "DEAD/EXPIRED", home), dtype=pl.String),
        "INSURANCE": np.array(["Medicare", "Private", "Medicaid"])[x["ins"]],
        "LANGUAGE": _strings(np.where(x["english"], "ENGL", None)),
        "RELIGION": np.array(["CATHOLIC", "NOT SPECIFIED", "PROTESTANT QUAKER", "JEWISH", "UNOBTAINABLE"])[x["religion"]],
        "MARITAL_STATUS": _strings(np.array(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", None], dtype=object)[x["marital"]]),
        "ETHNICITY": np.array(["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC OR LATINO", "ASIAN", "OTHER",
                               "UNKNOWN/NOT SPECIFIED", "WHITE"])[pat["race"][adm["patient"]]],
        "EDREGTIME": _dt(x["edreg"], x["ed"]), "EDOUTTIME": _dt(x["edout"], x["ed"]), "DIAGNOSIS": diag,
        "HOSPITAL_EXPIRE_FLAG": adm["died"].astype(int), "HAS_CHARTEVENTS_DATA": has_chart.astype(int),
    }).sort("SUBJECT_ID", "ADMITTIME")
    units = np.array(CAREUNITS3)
    wards = np.array([50, 52, 33, 14, 7, 57, 23])
    rows["ICUSTAYS"] = pl.DataFrame({
        "SUBJECT_ID": sid[st["patient"]], "HADM_ID": hid[st["adm"]], "ICUSTAY_ID": stid,
        "DBSOURCE": np.where(st["carevue"], "carevue", "metavision"),
        "FIRST_CAREUNIT": units[st["first_unit"]], "LAST_CAREUNIT": units[st["last_unit"]],
        "FIRST_WARDID": wards[st["first_unit"]], "LAST_WARDID": wards[st["last_unit"]],
        "INTIME": _dt(st["intime"]), "OUTTIME": _dt(st["outtime"]),
        "LOS": ((st["outtime"] - st["intime"]) / DAY).round(4)}).sort("SUBJECT_ID", "INTIME")
    stay = chart["stay"].to_numpy()
    charttime, storetime = _event_times_abs(st, chart, rng)
    cv = pl.Series(st["carevue"][stay])
    rows["CHARTEVENTS"] = pl.DataFrame({
        "SUBJECT_ID": sid[st["patient"][stay]], "HADM_ID": hid[st["adm"][stay]], "ICUSTAY_ID": stid[stay],
        "ITEMID": chart["itemid"], "CHARTTIME": _dt(charttime), "STORETIME": _dt(storetime),
        "CGID": rng.integers(14000, 21000, stay.size), "VALUE": chart["value"], "VALUENUM": chart["valuenum"],
        "VALUEUOM": chart["valueuom"].replace("", None),
        "WARNING": pl.select(pl.when(~cv).then(chart["warning"])).to_series(),
        "ERROR": pl.select(pl.when(~cv).then(0)).to_series(),
        "RESULTSTATUS": pl.select(pl.when(cv & pl.Series(rng.random(stay.size) < 0.3)).then(pl.lit("Manual"))).to_series(),
        "STOPPED": pl.select(pl.when(cv).then(pl.lit("NotStopd"))).to_series(),
    }).sort("SUBJECT_ID", "CHARTTIME", "ICUSTAY_ID", "ITEMID", maintain_order=True)
    rows["CHARTEVENTS"] = rows["CHARTEVENTS"].select(pl.int_range(1, pl.len() + 1).alias("ROW_ID"), pl.all())
    rows["LABEVENTS"] = _labs_frame(rng, cohort, labs, sid, hid, mimic3=True)
    rows["NOTEEVENTS"] = _notes3(rng, cohort, notes)
    for name in ("PATIENTS", "ADMISSIONS", "ICUSTAYS"):
        rows[name] = rows[name].select(pl.int_range(1, pl.len() + 1).alias("ROW_ID"), pl.all())
    return rows


def _notes3(rng, cohort: Cohort, notes: list[dict]) -> pl.DataFrame:
    """NOTEEVENTS: discharge summaries carry only CHARTDATE, radiology no STORETIME, a few ISERROR=1."""
    adm = cohort.admissions
    a = np.array([nt["adm"] for nt in notes], dtype="int64")
    kind = np.array([nt["kind"] for nt in notes], dtype=object)
    time = np.array([nt["time"] for nt in notes], dtype="int64")
    store = np.array([nt["store"] for nt in notes], dtype="int64")
    n = a.size
    ds, rr = kind == "DS", kind == "RR"
    category = np.where(ds, "Discharge summary", np.where(rr, "Radiology", kind))
    description = np.where(ds, "Report", np.where(rr, "CHEST (PORTABLE AP)", np.where(
        kind == "Nursing", "Nursing Progress Note", "Physician Resident Progress Note")))
    iserror = rng.random(n) < 0.005
    df = pl.DataFrame({
        "SUBJECT_ID": cohort.patients["subject_id3"][adm["patient"][a]], "HADM_ID": adm["hadm_id3"][a],
        "CHARTDATE": _dt(time, unit="date"), "CHARTTIME": _dt(time, ~ds), "STORETIME": _dt(store, ~ds & ~rr),
        "CATEGORY": category, "DESCRIPTION": description,
        "CGID": pl.Series(np.where(ds | rr, 0, rng.integers(14000, 21000, n))),
        "ISERROR": pl.Series(np.where(iserror, 1, 0)), "TEXT": [nt["text"] for nt in notes]})
    df = df.with_columns(CGID=pl.when(pl.col("CGID") > 0).then("CGID"), ISERROR=pl.when(pl.col("ISERROR") == 1).then(1))
    df = df.sort("SUBJECT_ID", "CHARTDATE", "CHARTTIME", maintain_order=True)
    return df.select(pl.int_range(1, pl.len() + 1).alias("ROW_ID"), pl.all())


