"""Chart and lab events of the synthetic stays: values driven by the latent state, as MIMIC charts them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from emerge_ehr.data.synthetic.conditions import CONDITIONS, COND_INDEX, HOUR, VITALS
from emerge_ehr.data.synthetic.population import Cohort, sigmoid
from emerge_ehr.data.synthetic.vocabulary import CREATININE, LAB_ITEMS, Vocabulary




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


def chart_events(rng, cohort: Cohort, vocab: Vocabulary, layout: str) -> pl.DataFrame:
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
    abnormal = rng.random(t.size) < sigmoid(-2.5 + 0.8 * latent.severity[owner])
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


def lab_events(rng, cohort: Cohort) -> pl.DataFrame:
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


