"""Synthetic patients, admissions and ICU stays, with their planted conditions and outcomes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emerge_ehr.data.synthetic.conditions import CONDITIONS, COND_INDEX, DAY, DKA_GIVEN_DM, HOUR
from emerge_ehr.data.synthetic.vocabulary import CAREUNITS4, CAREUNIT_P




def sigmoid(x):
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
            conds[:, i] = rng.random(n) < sigmoid(logit)
    dm = conds[:, COND_INDEX["diabetes mellitus"]]
    conds[:, COND_INDEX["diabetic ketoacidosis"]] = dm & (rng.random(n) < DKA_GIVEN_DM)
    return conds


def _stay_lengths(rng, n: int, severity: np.ndarray) -> np.ndarray:
    """ICU length of stay in seconds: lognormal, median ~2.7 days, between ~12 h and 15 days."""
    days = np.exp(np.log(2.7) + 0.15 * severity + rng.normal(0, 0.75, n))
    return (np.clip(days, 0.5, 15.0) * DAY).astype("int64")


def simulate_cohort(rng, n_patients: int) -> Cohort:
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
        died = rng.random(n) < np.where(n_icu > 0, sigmoid(logit), 0.01)
        in_icu_death = rng.random(n) < 0.85
        death_t = np.where(in_icu_death, last_out - (rng.uniform(0, 1, n) * HOUR).astype("int64"),
                           last_out + (rng.uniform(12, 120, n) * HOUR).astype("int64"))
        ward_days = np.exp(np.log(2.5) + rng.normal(0, 0.7, n)) * DAY
        disch = np.where(n_icu > 0, last_out, admit_t + HOUR * 2) + ward_days.astype("int64")
        disch = np.where(died, death_t, disch)
        deathtime = np.where(died, death_t, -1)
        # death after discharge, within and beyond 30 days
        post_logit = -3.0 + 0.6 * sev + 0.5 * (conds @ cond_mort)
        post_death = ~died & (rng.random(n) < sigmoid(post_logit))
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
        again = ~died & (rng.random(n) < sigmoid(readm_logit))
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


