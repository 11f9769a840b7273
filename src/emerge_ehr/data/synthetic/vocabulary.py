"""Itemids per charting system and the units and texts of ``config/variables.yaml`` the generator charts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_VARIABLES = REPO_ROOT / "config" / "variables.yaml"



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



@dataclass
class Vocabulary:
    """Itemids, units and charted texts taken from variables.yaml."""

    items: dict  # system -> role -> itemid
    units: dict  # variable -> canonical unit text
    alt_units: dict  # variable -> unit text of the non-canonical unit
    gcs: dict  # (variable, system) -> {score: text}
    gcs_ett: dict  # system -> verbal text for an intubated patient
    refill: dict  # system -> (normal text, abnormal text)


def load_vocabulary(path: str | Path) -> Vocabulary:
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


