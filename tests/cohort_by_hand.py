"""The cohort definition worked out a second time, with the standard library only, from raw MIMIC-III CSVs.

An independent check on the workflow's cohort (polars): the same inclusion steps and labels, written
from the definition in config/README.md rather than from the workflow's code. Column names are read up
to case, as the workflow reads them.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

WINDOW = timedelta(days=30)


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as handle:
        return [{key.lower(): value for key, value in row.items()} for row in csv.DictReader(handle)]


def _time(text: str) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S") if text else None


def mimic3_cohort(root: Path, min_hours: float = 48.0) -> tuple[list[int], dict[int, tuple[int, int | None]]]:
    """Stays kept after each inclusion step (before the chart-data check), and per kept stay
    (mortality, ICU readmission or None where the patient died in the ICU)."""
    patients = {int(r["subject_id"]): r for r in _rows(root / "PATIENTS.csv.gz")}
    admissions = {int(r["hadm_id"]): r for r in _rows(root / "ADMISSIONS.csv.gz")}
    icustays = _rows(root / "ICUSTAYS.csv.gz")
    stays = [s for s in icustays if int(s["hadm_id"]) in admissions and int(s["subject_id"]) in patients]
    per_admission = Counter(int(s["hadm_id"]) for s in stays)
    alone = [s for s in stays if per_admission[int(s["hadm_id"])] == 1]
    untransferred = [s for s in alone if s["first_careunit"] == s["last_careunit"]
                     and (not s["first_wardid"] or s["first_wardid"] == s["last_wardid"])]

    def age(stay: dict) -> float:
        born = _time(patients[int(stay["subject_id"])]["dob"])
        return min((_time(stay["intime"]) - born).days / 365.2425, 91.0)

    adults = [s for s in untransferred if age(s) >= 18]
    long_enough = [s for s in adults if (_time(s["outtime"]) - _time(s["intime"])).total_seconds() >= min_hours * 3600]
    intimes = defaultdict(list)
    for s in icustays:
        intimes[int(s["subject_id"])].append((int(s["icustay_id"]), _time(s["intime"])))
    labels = {}
    for s in long_enough:
        admission, patient = admissions[int(s["hadm_id"])], patients[int(s["subject_id"])]
        died = admission["hospital_expire_flag"] == "1" or bool(admission["deathtime"])
        out = _time(s["outtime"])
        death = _time(admission["deathtime"]) or _time(patient["dod"][:10] + " 00:00:00" if patient["dod"] else "")
        died_in_icu = (death <= out) if admission["deathtime"] else bool(death) and death.date() < out.date()
        if died_in_icu:
            readmitted = None
        else:
            later = any(other != int(s["icustay_id"]) and out <= start <= out + WINDOW
                        for other, start in intimes[int(s["subject_id"])])
            readmitted = int(later or (death is not None and death <= out + WINDOW))
        labels[int(s["icustay_id"])] = (int(died), readmitted)
    return [len(stays), len(alone), len(untransferred), len(adults), len(long_enough)], labels
