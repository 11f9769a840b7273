"""Deterministic synthetic MIMIC-III / MIMIC-IV database (the offline demo data).

The generator plants latent conditions and a severity score per patient, lets them drive vital signs,
labs, notes and outcomes (in-hospital death, readmission), and writes the tables with the real MIMIC
file names, column names and formats, so the rest of the workflow runs unchanged on it.  Some
conditions (metastatic cancer, cirrhosis, acute kidney injury) leave little or no trace in the vital
signs, so only the notes reveal them: the time series alone predict outcomes moderately and the
notes add information.  ``ground_truth.parquet`` records what was planted per ICU stay.

Itemids, units and categorical texts come from ``config/variables.yaml``; every chosen itemid is
checked against it.
"""
from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VARIABLES = REPO_ROOT / "config" / "variables.yaml"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
HOUR = 3600
DAY = 86400

# --------------------------------------------------------------------------------------------------
# Latent conditions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A planted condition: how common, what it does to the vitals, the outcomes and the notes."""

    name: str
    chronic: bool  # chronic: fixed per patient; acute: drawn per admission
    prevalence: float
    forms: tuple[str, ...]  # note surface forms (full names and abbreviations)
    shifts: dict = field(default_factory=dict)  # variable -> mean shift of its charted values
    spread: dict = field(default_factory=dict)  # variable -> multiplier of its within-stay noise
    mortality: float = 0.0  # log-odds effect on in-hospital death
    readmission: float = 0.0  # log-odds effect on readmission
    imaging: str = ""  # radiology finding ("{x}" = surface form); empty if invisible on imaging


CONDITIONS: tuple[Condition, ...] = (
    Condition("sepsis", False, 0.18, ("sepsis", "septic shock", "sepsis"),
              {"heart_rate": 14, "temperature": 0.9, "systolic_bp": -12, "diastolic_bp": -6,
               "respiratory_rate": 4, "glucose": 15}, {"temperature": 1.5},
              mortality=0.9, readmission=0.3),
    Condition("pneumonia", False, 0.17, ("pneumonia", "PNA", "pneumonia"),
              {"respiratory_rate": 4, "spo2": -2.5, "fio2": 0.12, "temperature": 0.5, "heart_rate": 5},
              mortality=0.4, readmission=0.2,
              imaging="Right lower lobe consolidation, compatible with {x}."),
    Condition("congestive heart failure", True, 0.15, ("congestive heart failure", "CHF", "heart failure"),
              {"heart_rate": 4, "spo2": -1.2, "respiratory_rate": 2, "weight": 9},
              mortality=0.4, readmission=0.8,
              imaging="Pulmonary vascular congestion and small bilateral effusions, consistent with {x}."),
    Condition("chronic obstructive pulmonary disease", True, 0.12,
              ("COPD", "chronic obstructive pulmonary disease", "COPD"),
              {"spo2": -2.5, "respiratory_rate": 3, "fio2": 0.05, "ph": -0.02},
              mortality=0.3, readmission=0.6,
              imaging="Hyperinflated lungs with flattened diaphragms, consistent with {x}."),
    Condition("acute kidney injury", False, 0.15, ("acute kidney injury", "AKI", "AKI"),
              {}, mortality=0.9, readmission=0.4),
    Condition("atrial fibrillation", True, 0.14, ("atrial fibrillation", "afib", "AF", "AFib"),
              {"heart_rate": 16}, {"heart_rate": 2.5}, mortality=0.2, readmission=0.3),
    Condition("diabetes mellitus", True, 0.22, ("diabetes mellitus", "DM", "DM2", "diabetes"),
              {"glucose": 60}, {"glucose": 1.8}, mortality=0.1, readmission=0.4),
    Condition("diabetic ketoacidosis", False, 0.0, ("diabetic ketoacidosis", "DKA"),
              {"glucose": 230, "ph": -0.14, "respiratory_rate": 6, "heart_rate": 10}, {"glucose": 2.0},
              mortality=0.2, readmission=0.6),
    Condition("stroke", False, 0.08, ("stroke", "CVA", "cerebrovascular accident"),
              {"systolic_bp": 18, "diastolic_bp": 6, "gcs": -4.5}, mortality=1.0, readmission=0.2,
              imaging="Hypodensity in the left MCA territory consistent with acute {x}."),
    Condition("cirrhosis", True, 0.08, ("cirrhosis", "ESLD", "liver cirrhosis"),
              {}, mortality=1.3, readmission=0.9),
    Condition("metastatic cancer", True, 0.08, ("metastatic cancer", "metastatic disease", "stage IV cancer"),
              {}, mortality=1.8, readmission=0.8,
              imaging="Multiple pulmonary nodules, concerning for {x}."),
    Condition("acute respiratory failure", False, 0.14,
              ("acute respiratory failure", "ARF", "hypoxemic respiratory failure"),
              {"spo2": -3.5, "fio2": 0.25, "respiratory_rate": 5, "ph": -0.05, "gcs": -1.5},
              mortality=0.8, readmission=0.2,
              imaging="Diffuse bilateral airspace opacities in the setting of {x}; ETT in good position."),
)
COND_INDEX = {c.name: i for i, c in enumerate(CONDITIONS)}
DKA_GIVEN_DM = 0.12  # diabetic ketoacidosis only occurs in diabetics

# --------------------------------------------------------------------------------------------------
# Vital-sign model: normal, between-stay sd, within-stay sd, severity effect, decimals, clip range
# --------------------------------------------------------------------------------------------------
VITALS = {
    "heart_rate": (86.0, 9.0, 7.0, 4.5, 0, (25, 220)),
    "systolic_bp": (121.0, 13.0, 10.0, -5.5, 0, (50, 230)),
    "diastolic_bp": (61.0, 8.0, 7.0, -3.0, 0, (20, 130)),
    "respiratory_rate": (18.5, 3.0, 3.5, 1.5, 0, (4, 50)),
    "spo2": (97.4, 1.1, 1.4, -0.7, 0, (70, 100)),
    "temperature": (36.9, 0.3, 0.4, 0.15, 1, (33.0, 41.5)),
    "glucose": (132.0, 18.0, 30.0, 10.0, 0, (40, 900)),
    "ph": (7.39, 0.03, 0.04, -0.03, 2, (6.8, 7.7)),
    "fio2": (0.40, 0.08, 0.08, 0.07, 2, (0.21, 1.0)),
    "weight": (81.0, 19.0, 0.7, 0.0, 1, (35, 240)),
    "height": (170.0, 9.0, 0.6, 0.0, 0, (140, 205)),
}

# Itemids per charting system (checked against variables.yaml): metavision (MIMIC-IV and MIMIC-III
# 2008+) and carevue (MIMIC-III 2001-2008).  "alt" is the non-canonical unit or the arterial line.
ITEMS = {
    "metavision": {
        "heart_rate": 220045, "systolic_bp": 220179, "systolic_bp_alt": 220050,
        "diastolic_bp": 220180, "diastolic_bp_alt": 220051, "mean_bp": 220181, "mean_bp_alt": 220052,
        "respiratory_rate": 220210, "spo2": 220277, "temperature": 223762, "temperature_alt": 223761,
        "gcs_eye": 220739, "gcs_motor": 223901, "gcs_verbal": 223900, "capillary_refill_rate": 223951,
        "fio2": 223835, "fio2_alt": 223835, "glucose": 220621, "glucose_alt": 225664, "ph": 223830,
        "height": 226730, "height_alt": 226707, "weight": 226512, "weight_alt": 226531,
    },
    "carevue": {
        "heart_rate": 211, "systolic_bp": 455, "systolic_bp_alt": 51, "diastolic_bp": 8441,
        "diastolic_bp_alt": 8368, "mean_bp": 456, "mean_bp_alt": 52, "respiratory_rate": 618,
        "spo2": 646, "temperature": 676, "temperature_alt": 678, "gcs_eye": 184, "gcs_motor": 454,
        "gcs_verbal": 723, "gcs_total": 198, "capillary_refill_rate": 115, "fio2": 189,
        "fio2_alt": 3420, "glucose": 811, "glucose_alt": 807, "ph": 780,
        "height": 1394, "height_alt": 1394, "weight": 763, "weight_alt": 3581,
    },
}
LAB_ITEMS = {"glucose": 50931, "glucose_alt": 50809, "ph": 50820}
CREATININE = 50912  # a lab outside the 17 variables, raised by acute kidney injury

CAREUNITS4 = ("Medical Intensive Care Unit (MICU)", "Medical/Surgical Intensive Care Unit (MICU/SICU)",
              "Surgical Intensive Care Unit (SICU)", "Cardiac Vascular Intensive Care Unit (CVICU)",
              "Coronary Care Unit (CCU)", "Trauma SICU (TSICU)",
              "Neuro Surgical Intensive Care Unit (Neuro SICU)")
CAREUNITS3 = ("MICU", "MICU", "SICU", "CSRU", "CCU", "TSICU", "SICU")
CAREUNIT_P = np.array([0.30, 0.18, 0.14, 0.14, 0.12, 0.08, 0.04])


# --------------------------------------------------------------------------------------------------
# variables.yaml
# --------------------------------------------------------------------------------------------------


@dataclass
class Vocabulary:
    """Itemids, units and charted texts taken from variables.yaml."""

    items: dict  # system -> role -> itemid
    units: dict  # variable -> canonical unit text
    alt_units: dict  # variable -> unit text of the non-canonical unit
    gcs: dict  # (variable, system) -> {score: text}
    gcs_ett: dict  # system -> verbal text for an intubated patient
    refill: dict  # system -> (normal text, abnormal text)


def _load_vocabulary(path: str | Path) -> Vocabulary:
    """Read variables.yaml and check every itemid the generator charts is listed there."""
    spec = {v["name"]: v for v in yaml.safe_load(Path(path).read_text())["variables"]}
    for system, roles in ITEMS.items():
        for role, itemid in roles.items():
            var = role.removesuffix("_alt")
            if itemid not in spec[var]["items"]["chartevents"]:
                raise ValueError(f"{system} itemid {itemid} for {var} is not in {path}")
    for role, itemid in LAB_ITEMS.items():
        if itemid not in spec[role.removesuffix("_alt")]["items"]["labevents"]:
            raise ValueError(f"lab itemid {itemid} is not in {path}")
    display = {"degC": "°C"}
    units = {n: display.get(v.get("unit"), v.get("unit")) for n, v in spec.items() if v["kind"] == "numeric"}
    alt_units = {}
    for name, preferred in (("temperature", "°F"), ("weight", "lbs"), ("height", "Inch")):
        conv_units = spec[name]["conversions"][0]["units"]
        alt_units[name] = preferred if preferred in conv_units else conv_units[0]
    alt_units["fio2"] = "%"  # the percent charting that the fio2 'above 1' conversion handles

    gcs, gcs_ett = {}, {}
    for var in ("gcs_eye", "gcs_motor", "gcs_verbal"):
        scores = spec[var]["scores"]
        for system, numbered in (("metavision", False), ("carevue", True)):
            texts = {}
            for styled in (True, False):  # preferred style first, then fill gaps with the other
                for cat in spec[var]["categories"]:
                    if (cat[0].isdigit() == numbered) == styled and "ET" not in cat and scores[cat] > 0:
                        texts.setdefault(scores[cat], cat)
            gcs[var, system] = texts
    for cat in spec["gcs_verbal"]["categories"]:
        if "ET" in cat:
            gcs_ett["carevue" if cat[0].isdigit() else "metavision"] = cat
    gcs["gcs_total", "carevue"] = {s: c for c, s in spec["gcs_total"]["scores"].items()}

    refill_spec = spec["capillary_refill_rate"]
    refill = {}
    for system, word in (("metavision", "Seconds"), ("carevue", "secs")):
        by_score = {}
        for alias, cat in refill_spec["aliases"].items():
            if word in alias:
                by_score.setdefault(refill_spec["scores"][cat], alias)
        refill[system] = (by_score[0], by_score[1])
    return Vocabulary(ITEMS, units, alt_units, gcs, gcs_ett, refill)


# --------------------------------------------------------------------------------------------------
# Cohort: patients, admissions, ICU stays and their outcomes
# --------------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _year_start(years: np.ndarray) -> np.ndarray:
    """Seconds since 1970 of 1 January of each year."""
    return (years.astype("int64") - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype("int64")


@dataclass
class Cohort:
    """Flat numpy arrays: one entry per patient, per admission and per ICU stay."""

    patients: dict
    admissions: dict
    stays: dict


def _simulate_patients(rng, n: int) -> dict:
    """Demographics, severity and chronic conditions; ages include minors and shifted >89s."""
    age = np.clip(rng.normal(64, 16, n), 18, 88).round()
    minor = rng.random(n) < 0.03
    old = rng.random(n) < 0.04
    age = np.where(minor, rng.integers(1, 18, n), np.where(old, 91, age)).astype(int)
    chronic = np.zeros((n, len(CONDITIONS)), bool)
    for i, cond in enumerate(CONDITIONS):
        if cond.chronic:
            p = cond.prevalence * np.where(age >= 18, 1.0, 0.2)
            chronic[:, i] = rng.random(n) < p
    return {
        "n": n,
        "gender": np.where(rng.random(n) < 0.56, "M", "F"),
        "anchor_age": age,
        "anchor_year": rng.integers(2110, 2190, n),
        "year_group": rng.integers(0, 5, n),
        "severity": rng.normal(0, 1, n),
        "chronic": chronic,
        "race": rng.choice(7, n, p=[0.62, 0.12, 0.06, 0.04, 0.05, 0.06, 0.05]),
        "carevue": rng.random(n) < 0.55,  # MIMIC-III charting system
        "dod": np.full(n, -1, "int64"),
    }


def _acute_conditions(rng, n: int, severity: np.ndarray, chronic: np.ndarray) -> np.ndarray:
    """Acute conditions per admission, more likely in sicker patients."""
    conds = chronic.copy()
    for i, cond in enumerate(CONDITIONS):
        if not cond.chronic and cond.prevalence > 0:
            logit = np.log(cond.prevalence / (1 - cond.prevalence)) + 0.4 * severity
            conds[:, i] = rng.random(n) < _sigmoid(logit)
    dm = conds[:, COND_INDEX["diabetes mellitus"]]
    conds[:, COND_INDEX["diabetic ketoacidosis"]] = dm & (rng.random(n) < DKA_GIVEN_DM)
    return conds


def _stay_lengths(rng, n: int, severity: np.ndarray) -> np.ndarray:
    """ICU length of stay in seconds: lognormal, median ~2.7 days, between ~12 h and 15 days."""
    days = np.exp(np.log(2.7) + 0.15 * severity + rng.normal(0, 0.75, n))
    return (np.clip(days, 0.5, 15.0) * DAY).astype("int64")


def _simulate_cohort(rng, n_patients: int) -> Cohort:
    """Admissions in up to four rounds; each round's death and readmission decide the next."""
    pat = _simulate_patients(rng, n_patients)
    cond_mort = np.array([c.mortality for c in CONDITIONS])
    cond_readm = np.array([c.readmission for c in CONDITIONS])
    adm_rows, stay_rows = [], []
    active = np.arange(n_patients)
    admit = _year_start(pat["anchor_year"] + rng.integers(0, 3, n_patients)) + rng.integers(0, 365 * DAY, n_patients)
    for round_ in range(4):
        n = active.size
        if n == 0:
            break
        sev = pat["severity"][active] + rng.normal(0, 0.5, n)
        conds = _acute_conditions(rng, n, sev, pat["chronic"][active])
        admit_t = admit[active]
        year = 1970 + admit_t.astype("datetime64[s]").astype("datetime64[Y]").astype(int)
        age = pat["anchor_age"][active] + year - pat["anchor_year"][active]
        u = rng.random(n)
        n_icu = np.where(round_ == 0, np.where(u < 0.92, 1, 2), np.where(u < 0.28, 0, np.where(u < 0.93, 1, 2)))
        elective = rng.random(n) < 0.15
        # ICU stays: the first shortly after admission, a second after a ward interlude
        in1 = admit_t + (np.minimum(rng.exponential(5, n), 40) * HOUR).astype("int64")
        out1 = in1 + _stay_lengths(rng, n, sev)
        in2 = out1 + (rng.uniform(20, 120, n) * HOUR).astype("int64")
        out2 = in2 + _stay_lengths(rng, n, sev)
        last_out = np.where(n_icu == 2, out2, out1)
        # in-hospital death
        logit = -4.0 + 0.9 * sev + conds @ cond_mort + 0.02 * (np.minimum(age, 91) - 65)
        died = rng.random(n) < np.where(n_icu > 0, _sigmoid(logit), 0.01)
        in_icu_death = rng.random(n) < 0.85
        death_t = np.where(in_icu_death, last_out - (rng.uniform(0, 1, n) * HOUR).astype("int64"),
                           last_out + (rng.uniform(12, 120, n) * HOUR).astype("int64"))
        ward_days = np.exp(np.log(2.5) + rng.normal(0, 0.7, n)) * DAY
        disch = np.where(n_icu > 0, last_out, admit_t + HOUR * 2) + ward_days.astype("int64")
        disch = np.where(died, death_t, disch)
        deathtime = np.where(died, death_t, -1)
        # death after discharge, within and beyond 30 days
        post_logit = -3.0 + 0.6 * sev + 0.5 * (conds @ cond_mort)
        post_death = ~died & (rng.random(n) < _sigmoid(post_logit))
        post_dod = disch + (np.exp(np.log(70) + rng.normal(0, 1.2, n)) * DAY).astype("int64")
        pat["dod"][active] = np.where(died, death_t, np.where(post_death, post_dod, -1))
        adm_rows.append({
            "patient": active, "admittime": admit_t, "dischtime": disch,
            "deathtime": deathtime, "died": died, "severity": sev, "conds": conds, "n_icu": n_icu,
            "elective": elective, "age": age,
        })
        for k, (tin, tout) in enumerate(((in1, out1), (in2, out2))):
            has = n_icu > k
            stay_rows.append({"adm_local": np.flatnonzero(has), "round": round_, "seq": k,
                              "intime": tin[has], "outtime": tout[has]})
        # readmission: sooner and likelier for sicker patients with readmission-prone conditions
        readm_logit = -1.25 + 0.45 * sev + conds @ cond_readm - 0.3 * round_
        again = ~died & (rng.random(n) < _sigmoid(readm_logit))
        kind = rng.random(n)
        gap_days = np.where(kind < 0.45, rng.uniform(0.5, 27, n),
                            np.where(kind < 0.6, rng.uniform(27, 33, n), 33 + np.exp(np.log(90) + rng.normal(0, 0.9, n))))
        nxt = disch + (gap_days * DAY).astype("int64")
        dod = pat["dod"][active]
        again &= (dod < 0) | (nxt < dod)
        admit[active] = nxt
        active = active[again]
    return _flatten_cohort(rng, pat, adm_rows, stay_rows)


def _flatten_cohort(rng, pat: dict, adm_rows: list, stay_rows: list) -> Cohort:
    """Concatenate the rounds, order admissions by patient and time, and link stays to them."""
    adm = {k: np.concatenate([r[k] for r in adm_rows]) for k in adm_rows[0]}
    offsets = np.cumsum([0] + [len(r["patient"]) for r in adm_rows])
    stay_adm = np.concatenate([s["adm_local"] + offsets[s["round"]] for s in stay_rows])
    stay_seq = np.concatenate([np.full(len(s["adm_local"]), s["seq"]) for s in stay_rows])
    stay = {"intime": np.concatenate([s["intime"] for s in stay_rows]),
            "outtime": np.concatenate([s["outtime"] for s in stay_rows])}
    order = np.lexsort((adm["admittime"], adm["patient"]))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    adm = {k: v[order] for k, v in adm.items()}
    stay_adm = rank[stay_adm]
    s_order = np.lexsort((stay_seq, stay_adm))
    stay = {k: v[s_order] for k, v in stay.items()}
    stay["adm"] = stay_adm[s_order]
    stay["seq"] = stay_seq[s_order]
    n_adm, n_stay = order.size, s_order.size
    unit = rng.choice(len(CAREUNITS4), n_stay, p=CAREUNIT_P)
    stroke = adm["conds"][stay["adm"], COND_INDEX["stroke"]]
    unit = np.where(stroke & (rng.random(n_stay) < 0.6), len(CAREUNITS4) - 1, unit)
    transfer = rng.random(n_stay) < 0.04
    stay["first_unit"] = unit
    stay["last_unit"] = np.where(transfer, (unit + rng.integers(1, len(CAREUNITS4), n_stay)) % len(CAREUNITS4), unit)
    stay["patient"] = adm["patient"][stay["adm"]]
    stay["carevue"] = pat["carevue"][stay["patient"]]
    pat["subject_id"] = _ids(rng, pat["n"], 10_000_000, 19_999_999)
    adm["hadm_id"] = _ids(rng, n_adm, 20_000_000, 29_999_999)
    stay["stay_id"] = _ids(rng, n_stay, 30_000_000, 39_999_999)
    pat["subject_id3"] = _ids(rng, pat["n"], 2, 99_999)
    adm["hadm_id3"] = _ids(rng, n_adm, 100_000, 199_999)
    stay["stay_id3"] = _ids(rng, n_stay, 200_000, 299_999)
    return Cohort(pat, adm, stay)


def _ids(rng, n: int, low: int, high: int) -> np.ndarray:
    """Distinct random identifiers in [low, high], in random order like real MIMIC ids."""
    return rng.choice(high - low + 1, n, replace=False).astype("int64") + low


# --------------------------------------------------------------------------------------------------
# Chart events
# --------------------------------------------------------------------------------------------------


def _event_times(rng, start: np.ndarray, end: np.ndarray, mean_gap: np.ndarray, cv: float):
    """Irregular event times (hours) per stay: gamma-distributed gaps from start until end."""
    n = np.ceil((end - start) / mean_gap * 1.6 + 4).astype(int)
    owner = np.repeat(np.arange(start.size), n)
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, 1.0, owner.size) * (mean_gap / shape)[owner]
    csum = np.cumsum(gaps)
    first = np.cumsum(n) - n
    phase = gaps[first] * rng.random(start.size)  # the first event falls anywhere in the first gap
    t = start[owner] + csum - csum[first][owner] + phase[owner]
    keep = t <= end[owner]
    return owner[keep], t[keep]


@dataclass
class StayLatent:
    """Per-stay quantities that drive the charted values."""

    severity: np.ndarray
    conds: np.ndarray
    died: np.ndarray
    hours: np.ndarray  # ICU length of stay in hours
    male: np.ndarray


def _values(rng, var: str, latent: StayLatent, owner: np.ndarray, t: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Charted values of one variable: normal + stay offset + severity + conditions + noise.

    Patients who will die drift further in the direction of their severity over the stay.
    """
    normal, _, within, sev_eff, decimals, (lo, hi) = VITALS[var]
    shift = np.zeros(latent.severity.size)
    spread = np.ones(latent.severity.size)
    for i, cond in enumerate(CONDITIONS):
        shift += cond.shifts.get(var, 0.0) * latent.conds[:, i]
        spread *= np.where(latent.conds[:, i], cond.spread.get(var, 1.0), 1.0)
    frac = np.clip(t / np.maximum(latent.hours[owner], 1), 0, 1)
    drift = np.where(latent.died[owner], 0.8 * sev_eff * frac, 0.0)
    wave = 0.5 * within * np.sin(t / 7.0 + offset[owner] * 3.1)
    value = (normal + offset[owner] + sev_eff * latent.severity[owner] + shift[owner] + drift + wave
             + within * spread[owner] * rng.standard_normal(t.size))
    return np.clip(value, lo, hi).round(decimals)


def _block(owner, t, itemid, valuenum, value=None, uom=None) -> pl.DataFrame:
    """One variable's chart rows; `value` defaults to the text of valuenum."""
    valuenum = np.asarray(valuenum, dtype="float64")
    if value is None:
        vn = pl.Series(valuenum)
        value = pl.when(vn == vn.round(0)).then(vn.cast(pl.Int64).cast(pl.String)).otherwise(vn.cast(pl.String))
        value = pl.select(value).to_series()
    return pl.DataFrame({
        "stay": pl.Series(owner, dtype=pl.Int32), "t": pl.Series(t, dtype=pl.Float64),
        "itemid": pl.Series(np.broadcast_to(itemid, owner.shape).astype("int32")),
        "value": pl.Series(value, dtype=pl.String), "valuenum": pl.Series(valuenum),
        "valueuom": pl.Series(np.broadcast_to(np.asarray(uom if uom is not None else "", dtype=object), owner.shape),
                              dtype=pl.String),
    })


def _chart_events(rng, cohort: Cohort, vocab: Vocabulary, layout: str) -> pl.DataFrame:
    """All chart events: rows (stay index, hours since intime, itemid, value, valuenum, valueuom)."""
    st, adm = cohort.stays, cohort.admissions
    n = st["intime"].size
    latent = StayLatent(adm["severity"][st["adm"]], adm["conds"][st["adm"]], adm["died"][st["adm"]],
                        (st["outtime"] - st["intime"]) / HOUR,
                        cohort.patients["gender"][st["patient"]] == "M")
    system = np.where(st["carevue"] & (layout == "mimic3"), 1, 0)  # 0 metavision, 1 carevue
    offsets = {v: rng.normal(0, spec[1], n) for v, spec in VITALS.items()}
    offsets["height"] += np.where(latent.male, 6.0, -6.0)
    offsets["weight"] += np.where(latent.male, 6.0, -6.0)
    # charting starts a little before intime and ends after outtime for some stays
    start = -np.where(rng.random(n) < 0.2, rng.uniform(0, 1.5, n), 0.0)
    end = latent.hours + np.where(rng.random(n) < 0.2, rng.uniform(0, 1.5, n), 0.0)
    blocks = []

    def item(role, owner):
        return np.where(system[owner] == 1, vocab.items["carevue"].get(role, 0), vocab.items["metavision"][role])

    # vitals roughly hourly, with a charting gap of several hours in some stays
    owner, t = _event_times(rng, start, end, rng.uniform(0.5, 1.0, n), 0.5)
    gap0 = rng.uniform(0, latent.hours)
    gap1 = gap0 + np.where(rng.random(n) < 0.3, rng.uniform(3, 9, n), 0)
    keep = ~((t > gap0[owner]) & (t < gap1[owner]))
    owner, t = owner[keep], t[keep]
    arterial = (rng.random(n) < 0.4)[owner]
    sbp = _values(rng, "systolic_bp", latent, owner, t, offsets["systolic_bp"])
    dbp = np.minimum(_values(rng, "diastolic_bp", latent, owner, t, offsets["diastolic_bp"]), sbp - 10)
    mbp = ((sbp + 2 * dbp) / 3 + rng.normal(0, 2, t.size)).round()
    for var, vals in (("heart_rate", None), ("systolic_bp", sbp), ("diastolic_bp", dbp), ("mean_bp", mbp),
                      ("respiratory_rate", None), ("spo2", None)):
        present = rng.random(t.size) < (0.93 if "bp" in var else 0.97)
        if vals is None:
            vals = _values(rng, var, latent, owner, t, offsets[var])
        ids = np.where(arterial, item(f"{var}_alt", owner), item(var, owner)) if "bp" in var else item(var, owner)
        blocks.append(_block(owner[present], t[present], ids[present], vals[present], uom=vocab.units[var]))

    # temperature every ~4 h, Fahrenheit or Celsius (charting habit per stay)
    owner, t = _event_times(rng, start, end, np.full(n, 4.0), 0.4)
    celsius = _values(rng, "temperature", latent, owner, t, offsets["temperature"])
    fahrenheit = rng.random(t.size) < np.where(rng.random(n) < 0.75, 0.95, 0.1)[owner]
    vals = np.where(fahrenheit, (celsius * 9 / 5 + 32).round(1), celsius)
    ids = np.where(fahrenheit, item("temperature_alt", owner), item("temperature", owner))
    uom = np.where(fahrenheit, vocab.alt_units["temperature"], vocab.units["temperature"])
    blocks.append(_block(owner, t, ids, vals, uom=uom))

    blocks += _gcs_events(rng, latent, system, vocab, start, end)
    blocks += _sparse_events(rng, latent, system, vocab, start, end, offsets, item)

    chart = pl.concat(blocks)
    chart = _inject_artifacts(rng, chart)
    silent = np.flatnonzero(rng.random(n) < 0.01)  # stays without any chart event
    return chart.filter(~pl.col("stay").is_in(silent.tolist()))


def _gcs_events(rng, latent: StayLatent, system, vocab: Vocabulary, start, end) -> list[pl.DataFrame]:
    """GCS components every ~4 h (text + score); the total only in carevue, as in MIMIC-III."""
    n = latent.severity.size
    gcs_shift = sum(c.shifts.get("gcs", 0.0) * latent.conds[:, i] for i, c in enumerate(CONDITIONS))
    level = 15 - np.maximum(0, 1.4 * latent.severity - 0.8) + gcs_shift + rng.normal(0, 1, n)
    owner, t = _event_times(rng, start, end, np.full(n, 4.0), 0.35)
    total = np.clip(np.round(level[owner] + rng.normal(0, 1.2, t.size)), 3, 15).astype(int)
    deficit = 15 - total
    verbal_def = np.minimum(4, np.round(deficit * 0.45)).astype(int)
    eye_def = np.minimum(3, np.round((deficit - verbal_def) * 0.5)).astype(int)
    scores = {"gcs_eye": 4 - eye_def, "gcs_verbal": 5 - verbal_def, "gcs_motor": 6 - (deficit - verbal_def - eye_def)}
    intubated = latent.conds[:, COND_INDEX["acute respiratory failure"]][owner] & (scores["gcs_verbal"] == 1)
    sys_names = np.array(["metavision", "carevue"])[system[owner]]
    blocks = []
    for var, score in scores.items():
        table = {(s, sc): vocab.gcs[var, s][sc] for s in ("metavision", "carevue") for sc in vocab.gcs[var, s]}
        text = np.array([table[s, int(sc)] for s, sc in zip(sys_names, score)], dtype=object)
        if var == "gcs_verbal":
            text = np.where(intubated, np.array([vocab.gcs_ett[s] for s in sys_names], dtype=object), text)
        ids = np.where(system[owner] == 1, vocab.items["carevue"][var], vocab.items["metavision"][var])
        blocks.append(_block(owner, t, ids, score, value=text, uom=None))
    cv = system[owner] == 1
    total_text = np.array([vocab.gcs["gcs_total", "carevue"][int(s)] for s in total[cv]], dtype=object)
    blocks.append(_block(owner[cv], t[cv], vocab.items["carevue"]["gcs_total"], total[cv], value=total_text, uom="points"))
    return blocks


def _sparse_events(rng, latent: StayLatent, system, vocab: Vocabulary, start, end, offsets, item) -> list[pl.DataFrame]:
    """Capillary refill, FiO2, glucose, pH, height and weight: a few times a day or once."""
    n = latent.severity.size
    blocks = []
    # capillary refill every ~8 h in 40% of stays, abnormal more often when sick
    owner, t = _event_times(rng, start, end, np.where(rng.random(n) < 0.4, 8.0, 1e6), 0.5)
    abnormal = rng.random(t.size) < _sigmoid(-2.5 + 0.8 * latent.severity[owner])
    text = np.array([vocab.refill[s][int(a)] for s, a in zip(np.array(["metavision", "carevue"])[system[owner]], abnormal)], dtype=object)
    blocks.append(_block(owner, t, item("capillary_refill_rate", owner), np.full(t.size, np.nan), value=text))
    # FiO2 every ~4 h for patients on oxygen: percent mostly, sometimes a fraction
    on_o2 = (rng.random(n) < 0.45) | latent.conds[:, COND_INDEX["acute respiratory failure"]]
    owner, t = _event_times(rng, start, end, np.where(on_o2, 4.0, 1e6), 0.5)
    frac = _values(rng, "fio2", latent, owner, t, offsets["fio2"])
    as_fraction = rng.random(t.size) < np.where(system[owner] == 1, 0.4, 0.05)
    vals = np.where(as_fraction, frac, (frac * 100).round())
    ids = np.where(as_fraction, item("fio2", owner), item("fio2_alt", owner))
    blocks.append(_block(owner, t, ids, vals, uom=np.where(as_fraction, "", vocab.alt_units["fio2"])))
    # glucose (fingerstick or serum) every ~6 h, pH every ~8 h in patients with arterial blood gases
    owner, t = _event_times(rng, start, end, rng.uniform(4, 9, n), 0.6)
    vals = _values(rng, "glucose", latent, owner, t, offsets["glucose"])
    ids = np.where(rng.random(t.size) < 0.6, item("glucose_alt", owner), item("glucose", owner))
    blocks.append(_block(owner, t, ids, vals, uom=vocab.units["glucose"]))
    abg = on_o2 & (rng.random(n) < 0.7)
    owner, t = _event_times(rng, start, end, np.where(abg, 8.0, 1e6), 0.6)
    blocks.append(_block(owner, t, item("ph", owner), _values(rng, "ph", latent, owner, t, offsets["ph"]),
                         uom=vocab.units["ph"]))
    # height once in 60% of stays, weight once or twice; mixed units
    for var, p_any in (("height", 0.6), ("weight", 0.9)):
        count = (rng.random(n) < p_any).astype(int) + (var == "weight") * (rng.random(n) < 0.3)
        owner = np.repeat(np.arange(n), count)
        t = rng.uniform(0, np.minimum(latent.hours[owner], 24))
        vals = _values(rng, var, latent, owner, t, offsets[var])
        alt = rng.random(owner.size) < 0.4
        scale = 1 / 2.54 if var == "height" else 1 / 0.45359237
        vals = np.where(alt, (vals * scale).round(0 if var == "height" else 1), vals)
        ids = np.where(alt, item(f"{var}_alt", owner), item(var, owner))
        blocks.append(_block(owner, t, ids, vals, uom=np.where(alt, vocab.alt_units[var], vocab.units[var])))
    return blocks


def _inject_artifacts(rng, chart: pl.DataFrame) -> pl.DataFrame:
    """Rare charting errors: zeros and tenfold values, and values recorded as text without a number."""
    u = pl.Series(rng.random(chart.height))
    vn = chart["valuenum"].fill_nan(None)
    numeric = vn.is_not_null() & chart["value"].cast(pl.Float64, strict=False).is_not_null()  # not GCS texts
    zero, tenfold = numeric & (u < 0.0008), numeric & (u >= 0.0008) & (u < 0.0015)
    blank = numeric & (u >= 0.0015) & (u < 0.0025)
    vn = pl.select(pl.when(zero).then(0.0).when(tenfold).then(vn * 10).when(blank).then(None).otherwise(vn)).to_series()
    value = pl.select(pl.when(zero).then(pl.lit("0")).when(tenfold).then(vn.round(0).cast(pl.Int64).cast(pl.String))
                      .when(blank).then(pl.lit("Error")).otherwise(chart["value"])).to_series()
    return chart.with_columns(valuenum=vn, value=value, warning=(zero | tenfold).cast(pl.Int64))


# --------------------------------------------------------------------------------------------------
# Lab events
# --------------------------------------------------------------------------------------------------


def _lab_events(rng, cohort: Cohort) -> pl.DataFrame:
    """Glucose, blood-gas pH and creatinine over the whole admission (labs carry no stay id).

    Rows: admission index, seconds since admittime, itemid, value, valuenum, unit, reference range.
    """
    adm = cohort.admissions
    n = adm["admittime"].size
    hours = (adm["dischtime"] - adm["admittime"]) / HOUR
    latent = StayLatent(adm["severity"], adm["conds"], adm["died"], hours, np.zeros(n, bool))
    offsets = {v: rng.normal(0, VITALS[v][1], n) for v in ("glucose", "ph")}
    start, end = np.zeros(n), hours
    rows = []
    owner, t = _event_times(rng, start, end, np.full(n, 12.0), 0.5)
    rows.append((owner, t, LAB_ITEMS["glucose"], _values(rng, "glucose", latent, owner, t, offsets["glucose"]),
                 "mg/dL", 70.0, 100.0))
    abg = rng.random(n) < 0.55
    owner, t = _event_times(rng, start, end, np.where(abg, 10.0, 1e6), 0.6)
    rows.append((owner, t, LAB_ITEMS["ph"], _values(rng, "ph", latent, owner, t, offsets["ph"]), "units", 7.35, 7.45))
    rows.append((owner, t, LAB_ITEMS["glucose_alt"],
                 _values(rng, "glucose", latent, owner, t, offsets["glucose"]), "mg/dL", 70.0, 105.0))
    owner, t = _event_times(rng, start, end, np.full(n, 24.0), 0.3)
    aki = latent.conds[:, COND_INDEX["acute kidney injury"]]
    creat = np.exp(np.log(0.95) + 0.9 * aki[owner] + 0.08 * latent.severity[owner] + rng.normal(0, 0.25, t.size))
    rows.append((owner, t, CREATININE, creat.round(1), "mg/dL", 0.5, 1.2))
    blocks = []
    for owner, t, itemid, vals, unit, lo, hi in rows:
        blocks.append(_block(owner, t, itemid, vals, uom=unit).with_columns(
            ref_range_lower=pl.lit(lo), ref_range_upper=pl.lit(hi),
            flag=pl.when((pl.col("valuenum") < lo) | (pl.col("valuenum") > hi)).then(pl.lit("abnormal"))
            .otherwise(pl.lit(None, pl.String))))
    labs = pl.concat(blocks)
    outpatient = rng.random(labs.height) < 0.02  # drawn before admission, without hadm_id
    shift = np.where(outpatient, -rng.uniform(24, 240, labs.height), 0.0)
    return labs.with_columns(t=pl.col("t") + shift, outpatient=pl.Series(outpatient))


# --------------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------------

NEGATIONS = ("No evidence of {x}.", "Negative for {x}.", "r/o {x} - ruled out.", "{x} was ruled out.",
             "No signs of {x}.", "Low suspicion for {x}; not treated.")
DENIALS = ("Denies chest pain.", "Denies shortness of breath.", "Denies fever or chills.", "Negative for PE.",
           "No evidence of PE on CTA.", "Denies abdominal pain, nausea or vomiting.")
FAMILY = ("Mother had breast cancer.", "Family history of CAD.", "Father with {x}.", "Family history of {x}.",
          "Sister with {x}.", "Non-contributory.")
FILLER = ("Pt admitted from ED.", "Started on broad-spectrum abx.", "Cont. home meds.", "Tolerating PO.",
          "Foley in place, UOP adequate.", "IVF bolus given with good response.", "Pain controlled with PRN meds.",
          "PT/OT consulted.", "Lines: PIV x2.", "Electrolytes repleted as needed.", "Seen and examined with team.",
          "Family updated at bedside.", "Code status: full code.", "Ambulating with assistance.",
          "SQ heparin for DVT ppx.", "Skin intact.", "Lungs with scattered rhonchi.", "Afebrile overnight.",
          "BPs stable off pressors.", "Labs reviewed.", "Plan discussed with attending.", "NPO after midnight.")
NORMAL_FINDINGS = ("The cardiomediastinal silhouette is within normal limits.", "No pneumothorax.",
                   "No large pleural effusion.", "Osseous structures are unremarkable.",
                   "Lines and tubes are unchanged in position.", "Heart size is normal.")
SYMPTOMS = ("shortness of breath", "hypotension", "altered mental status", "fever", "chest pain", "weakness")


def _mention(r, cond: Condition, mentions: set) -> str:
    """A surface form of the patient's own condition, recorded as a ground-truth mention."""
    form = r.choice(cond.forms)
    mentions.add(form)
    return form


def _negations(r, present: np.ndarray, k: int) -> list[str]:
    """Negated mentions of absent conditions and denied symptoms."""
    absent = [c for i, c in enumerate(CONDITIONS) if not present[i]]
    out = [r.choice(NEGATIONS).format(x=r.choice(c.forms)) for c in r.sample(absent, min(k, len(absent)))]
    out += r.sample(DENIALS, r.randint(0, 2))
    return out


def _family(r) -> str:
    """A family-history sentence, which never counts as the patient's own condition."""
    return r.choice(FAMILY).format(x=r.choice(CONDITIONS).name)


def _radiology(r, age: int, sex: str, present: np.ndarray, mentions: set) -> str:
    """A chest x-ray / CT report; own conditions visible on imaging appear in findings and impression."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    exam = "CT HEAD W/O CONTRAST" if present[COND_INDEX["stroke"]] and r.random() < 0.5 else r.choice(
        ("CHEST (PORTABLE AP)", "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)", "CT CHEST W/CONTRAST"))
    history = [_mention(r, c, mentions) for c in own if r.random() < 0.3]
    indication = f"{age}-year-old {'man' if sex == 'M' else 'woman'} with {', '.join(history) or r.choice(SYMPTOMS)}"
    seen = [c for c in own if c.imaging and r.random() < 0.7]
    findings = [c.imaging.format(x=_mention(r, c, mentions)) for c in seen]
    findings += r.sample(NORMAL_FINDINGS, r.randint(1, 5))
    findings += [s for s in _negations(r, present, r.randint(0, 2)) if "Denies" not in s]
    r.shuffle(findings)
    impression = "; ".join(c.imaging.split(",")[0].format(x=_mention(r, c, mentions)) for c in seen[:2]) \
        or "No acute cardiopulmonary process."
    return (f"EXAMINATION:  {exam}\n\nINDICATION:  {indication} // eval for {r.choice(('pna', 'effusion', 'edema', 'interval change'))}\n\n"
            f"TECHNIQUE:  {'Portable AP' if 'PORTABLE' in exam else 'Standard'} views.\n\n"
            f"COMPARISON:  {r.choice(('None.', 'Prior study from ___.'))}\n\n"
            f"FINDINGS:\n\n{' '.join(findings)}\n\nIMPRESSION:\n\n{impression}\n")


def _discharge(r, age: int, sex: str, present: np.ndarray, died: bool, mentions: set) -> str:
    """A discharge summary: history, hospital course and discharge diagnoses of varied length."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    chronic = [_mention(r, c, mentions) for c in own if c.chronic and r.random() < 0.8]
    course = []
    for c in own:
        if not c.chronic and r.random() < 0.85:
            form = _mention(r, c, mentions)
            course.append(f"# {form}: {r.choice(('treated and improved.', 'managed in the ICU.', 'resolved prior to discharge.', 'ongoing, see plan.'))}")
        course += r.sample(FILLER, r.randint(0, 4))
    course += _negations(r, present, r.randint(1, 3))
    diagnoses = [_mention(r, c, mentions) for c in own if r.random() < 0.75] or ["___"]
    disposition = "Expired" if died else r.choice(("Home", "Home With Service", "Extended Care"))
    return (f"Name:  ___                     Unit No:   ___\n\nAdmission Date:  ___              Discharge Date:   ___\n\n"
            f"Date of Birth:  ___             Sex:   {sex}\n\nService: MEDICINE\n\n"
            f"Allergies: \n{r.choice(('No Known Allergies / Adverse Drug Reactions', 'Penicillins', 'Sulfa (Sulfonamide Antibiotics)'))}\n\n"
            f"Chief Complaint:\n{r.choice(SYMPTOMS)}\n\n"
            f"History of Present Illness:\n{age} y/o {sex} with PMH {', '.join(chronic) or 'none'} who presents with "
            f"{r.choice(SYMPTOMS)}. {' '.join(_negations(r, present, 1) + r.sample(FILLER, r.randint(0, 6)))}\n\n"
            f"Past Medical History:\n" + "".join(f"- {c}\n" for c in chronic) +
            f"\nSocial History:\n___\n\nFamily History:\n{_family(r)}\n\n"
            f"Brief Hospital Course:\n{chr(10).join(course)}\n\n"
            f"Discharge Diagnoses:\n" + "".join(f"{d}\n" for d in diagnoses) +
            f"\nDischarge Disposition:\n{disposition}\n")


def _progress(r, present: np.ndarray, physician: bool, mentions: set) -> str:
    """A MIMIC-III nursing or physician progress note that mentions a few own conditions."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    lines = [f"{_mention(r, c, mentions)} - {r.choice(('stable', 'improving', 'monitor', 'cont current tx'))}."
             for c in own if r.random() < 0.3]
    lines += r.sample(FILLER, r.randint(1, 8 if physician else 4)) + _negations(r, present, r.randint(0, 1))
    if physician and r.random() < 0.3:
        lines.append(f"FHx: {_family(r)}")
    r.shuffle(lines)
    head = "Assessment and Plan:" if physician else r.choice(("Neuro:", "CV:", "Resp:", "GI/GU:"))
    return head + "\n" + "\n".join(lines) + "\n"


def _notes(rng, cohort: Cohort, layout: str) -> tuple[list[dict], list[set]]:
    """All notes (dicts) and, per admission, the surface forms of its own-condition mentions."""
    import random

    r = random.Random(int(rng.integers(2**62)))
    adm, st, pat = cohort.admissions, cohort.stays, cohort.patients
    stays_of = [[] for _ in adm["admittime"]]
    for s, a in enumerate(st["adm"]):
        stays_of[a].append(s)
    notes, mentions = [], [set() for _ in stays_of]
    for a in range(len(stays_of)):
        if r.random() < 0.15:  # admissions without any note
            continue
        p = adm["patient"][a]
        present, sex, age = adm["conds"][a], pat["gender"][p], int(adm["age"][a])
        for s in stays_of[a]:
            tin, tout = int(st["intime"][s]), int(st["outtime"][s])
            times = [tin + r.uniform(-6, 48) * HOUR] + [r.uniform(tin, tout) for _ in range(r.randint(0, 3))]
            for t in times:
                notes.append({"adm": a, "kind": "RR", "time": int(t), "store": int(t + r.uniform(0.3, 6) * HOUR),
                              "text": _radiology(r, age, sex, present, mentions[a])})
            if layout == "mimic3":
                for physician, gap in ((False, 12.0), (True, 24.0)):
                    t = tin + r.uniform(1, gap) * HOUR
                    while t < tout:
                        notes.append({"adm": a, "kind": "Physician " if physician else "Nursing", "time": int(t),
                                      "store": int(t + r.uniform(0.1, 2) * HOUR),
                                      "text": _progress(r, present, physician, mentions[a])})
                        t += r.uniform(0.6, 1.4) * gap * HOUR
        disch = int(adm["dischtime"][a])
        notes.append({"adm": a, "kind": "DS", "time": disch - disch % DAY, "store": disch + int(r.uniform(2, 48) * HOUR),
                      "text": _discharge(r, age, sex, present, bool(adm["died"][a]), mentions[a])})
    return notes, mentions


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


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


def _write_mimic4(out: Path, rng, cohort: Cohort, chart, labs, notes) -> dict:
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
    return {name: _write_csv_gz(df, out / f"{name}.csv.gz") for name, df in rows.items()}


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


def _write_mimic3(out: Path, rng, cohort: Cohort, chart, labs, notes) -> dict:
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
    return {name: _write_csv_gz(df, out / f"{name}.csv.gz") for name, df in rows.items()}


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


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def _ground_truth(cohort: Cohort, mentions: list[set], layout: str) -> pl.DataFrame:
    """One row per ICU stay: planted conditions, latent severity and own-condition note mentions."""
    pat, adm, st = cohort.patients, cohort.admissions, cohort.stays
    suffix = "3" if layout == "mimic3" else ""
    a = st["adm"]
    names = [c.name for c in CONDITIONS]
    return pl.DataFrame({
        "stay_id": pl.Series(st["stay_id" + suffix], dtype=pl.Int64),
        "subject_id": pl.Series(pat["subject_id" + suffix][st["patient"]], dtype=pl.Int64),
        "hadm_id": pl.Series(adm["hadm_id" + suffix][a], dtype=pl.Int64),
        "conditions": pl.Series([[names[i] for i in np.flatnonzero(adm["conds"][k])] for k in a], dtype=pl.List(pl.String)),
        "severity": pl.Series(adm["severity"][a], dtype=pl.Float64),
        "mentions": pl.Series([sorted(mentions[k]) for k in a], dtype=pl.List(pl.String)),
    }).sort("stay_id")


def generate(out_dir: str | Path, layout: str = "mimic4", n_patients: int = 1400, seed: int = 0,
             variables_yaml: str | Path = DEFAULT_VARIABLES) -> None:
    """Write a synthetic MIMIC database (about 1.4 ICU stays per patient) plus its ground truth."""
    if layout not in ("mimic4", "mimic3"):
        raise ValueError(f"layout must be 'mimic4' or 'mimic3', not {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _load_vocabulary(variables_yaml)
    cohort = _simulate_cohort(rng, n_patients)
    chart = _chart_events(rng, cohort, vocab, layout)
    labs = _lab_events(rng, cohort).rename({"stay": "adm"})
    notes, mentions = _notes(rng, cohort, layout)
    writer = _write_mimic3 if layout == "mimic3" else _write_mimic4
    counts = writer(out, rng, cohort, chart, labs, notes)
    truth = _ground_truth(cohort, mentions, layout)
    truth.write_parquet(out / "ground_truth.parquet")
    manifest = {"generator": "emerge_ehr.data.synthetic", "layout": layout, "n_patients": n_patients, "seed": seed,
                "variables_yaml": Path(variables_yaml).name, "rows": counts | {"ground_truth": truth.height}}
    (out / "synthetic_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv=None) -> None:
    """Command line: python -m emerge_ehr.data.synthetic OUT --layout mimic4 --patients 200 --seed 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--layout", choices=("mimic4", "mimic3"), default="mimic4")
    parser.add_argument("--patients", type=int, default=1400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variables", default=str(DEFAULT_VARIABLES))
    args = parser.parse_args(argv)
    generate(args.out_dir, args.layout, args.patients, args.seed, args.variables)


if __name__ == "__main__":
    main()
