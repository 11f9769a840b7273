"""A synthetic MIMIC-IV of any size, up to and beyond the full release, for measuring the pipeline at scale.

The generator of the demo holds the whole database in memory; this streams it: batches of patients, each from
its own seed, renumbered so that ids stay unique and sorted, appended to one gzip stream per table. The demo
generator charts only the 17 variables and writes about one note per ICU stay; full MIMIC-IV v2.2 has about
4,300 chart events, 1,600 lab events and 36 notes (MIMIC-IV-Note radiology and discharge) per ICU stay (313
million, 118 million and 2.6 million over 73,181 stays). So each batch is padded to that density with chart and
lab events of items outside the 17 variables (which the extraction must read and drop) and with radiology notes
in the stay's admission (all of them there: an upper bound on the note work per stay, since MIMIC-IV's notes
also cover admissions without an ICU stay).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from emerge_ehr.data.synthetic.charting import chart_events, lab_events
from emerge_ehr.data.synthetic.notes import note_texts
from emerge_ehr.data.synthetic.population import Cohort, simulate_cohort
from emerge_ehr.data.synthetic.vocabulary import DEFAULT_VARIABLES, load_vocabulary
from emerge_ehr.data.synthetic.writers import DATETIME_FORMAT, mimic4_tables

# Per ICU stay in MIMIC-IV v2.2 (chartevents, labevents, MIMIC-IV-Note radiology + discharge).
MIMIC4_DENSITY = {"chartevents": 4300, "labevents": 1600, "notes": 36}
# Mean characters of a MIMIC-IV-Note radiology report and discharge summary (the demo generator's are shorter).
NOTE_CHARS = {"RR": 1_600, "DS": 10_500}
FULL_MIMIC4_STAYS = 73_181
# Ids of one batch: the demo generator draws at most 10 million of each; batches take consecutive ranges.
_ID_BASES = {"subject_id": 10_000_000, "hadm_id": 20_000_000, "stay_id": 30_000_000}


def renumber(cohort: Cohort, first: dict[str, int]) -> dict[str, int]:
    """Give the batch's patients, admissions and stays consecutive ids from ``first`` (in the order of their
    drawn ids, so tables sorted by id stay sorted); returns the next free ids.

    >>> from emerge_ehr.data.synthetic.population import simulate_cohort
    >>> c = simulate_cohort(np.random.default_rng(0), 5)
    >>> nxt = renumber(c, {"subject_id": 100, "hadm_id": 200, "stay_id": 300})
    >>> sorted(c.patients["subject_id"].tolist()), nxt["subject_id"]
    ([100, 101, 102, 103, 104], 105)
    """
    following = {}
    for name, table in (("subject_id", cohort.patients), ("hadm_id", cohort.admissions), ("stay_id", cohort.stays)):
        order = np.argsort(np.argsort(table[name]))
        table[name] = first[name] + order
        following[name] = first[name] + order.size
    return following


def variable_itemids(variables_yaml: str | Path, table: str) -> set[int]:
    """Every itemid the variable definitions read from ``table``: the filler must avoid them."""
    spec = yaml.safe_load(Path(variables_yaml).read_text())
    return {int(i) for variable in spec["variables"] for i in variable.get("items", {}).get(table, [])}


def _uniform_times(rng, start: pl.Series, end: pl.Series) -> pl.Series:
    seconds = (end - start).dt.total_seconds().to_numpy()
    return start + pl.Series((rng.random(seconds.size) * seconds * 1e6).astype("int64")).cast(pl.Duration("us"))


def _filler_ids(low: int, high: int, used: set[int], count: int) -> np.ndarray:
    return np.array([i for i in range(low, high) if i not in used][:count])


def pad_chart(rng, chart: pl.DataFrame, stays: pl.DataFrame, per_stay: int, variable_items: set[int]) -> pl.DataFrame:
    """Chart events of items outside the variables, uniform over each stay, up to ``per_stay`` rows a stay."""
    missing = max(0, per_stay * stays.height - chart.height)
    pick = rng.integers(0, stays.height, missing)
    rows = stays[pick]
    items = _filler_ids(224000, 229000, variable_items, 60)
    filler = pl.DataFrame({
        "subject_id": rows["subject_id"], "hadm_id": rows["hadm_id"], "stay_id": rows["stay_id"],
        "caregiver_id": rng.integers(10000, 99999, missing), "charttime": _uniform_times(rng, rows["intime"], rows["outtime"]),
    }).with_columns(storetime=pl.col("charttime"), itemid=pl.Series(rng.choice(items, missing)),
                    valuenum=pl.Series(rng.normal(50, 20, missing).round(1)))
    filler = filler.with_columns(value=pl.col("valuenum").cast(pl.String), valueuom=pl.lit(None, pl.String),
                                 warning=pl.lit(0))
    padded = pl.concat([chart, filler.select(chart.columns).cast(chart.schema)])
    return padded.sort("subject_id", "charttime", "stay_id", "itemid", maintain_order=True)


def pad_labs(rng, labs: pl.DataFrame, admissions: pl.DataFrame, target: int, lab_items: set[int]) -> pl.DataFrame:
    """Lab events of items outside the variables, uniform over each admission, up to ``target`` rows."""
    missing = max(0, target - labs.height)
    rows = admissions[rng.integers(0, admissions.height, missing)]
    items = _filler_ids(50800, 52000, lab_items, 80)
    filler = pl.DataFrame({"subject_id": rows["subject_id"], "hadm_id": rows["hadm_id"],
                           "charttime": _uniform_times(rng, rows["admittime"], rows["dischtime"])})
    filler = filler.with_columns(itemid=pl.Series(rng.choice(items, missing)),
                                 valuenum=pl.Series(rng.lognormal(3, 1, missing).round(2)))
    filler = filler.with_columns(value=pl.col("valuenum").cast(pl.String), storetime=pl.col("charttime"))
    for column, dtype in labs.schema.items():
        if column not in filler.columns:
            filler = filler.with_columns(pl.lit(None, dtype).alias(column))
    padded = pl.concat([labs, filler.select(labs.columns).cast(labs.schema)])
    return padded.sort("subject_id", "charttime", "itemid", maintain_order=True)


def _long_texts(rng, pool: pl.Series, count: int, chars: int) -> pl.Series:
    """``count`` texts of about ``chars`` characters, each a few texts of ``pool`` joined."""
    parts = max(1, round(chars / max(1.0, pool.str.len_chars().mean())))
    picks = pool.to_numpy()[rng.integers(0, pool.len(), (count, parts))]
    return pl.Series(["\n\n".join(row) for row in picks], dtype=pl.String)


def pad_notes(rng, radiology: pl.DataFrame, stays: pl.DataFrame, admissions: pl.DataFrame, target: int) -> pl.DataFrame:
    """Radiology notes in the stays' admissions (texts drawn from the batch's own), up to ``target`` notes."""
    missing = max(0, target - radiology.height)
    if missing == 0 or radiology.height == 0:
        return radiology
    stay_admissions = stays.select("hadm_id").join(admissions.select("hadm_id", "admittime", "dischtime"), on="hadm_id")
    rows = stay_admissions[rng.integers(0, stay_admissions.height, missing)]
    subjects = stays.select("subject_id", "hadm_id").unique("hadm_id")
    filler = rows.join(subjects, on="hadm_id", how="left", maintain_order="left").with_columns(
        charttime=_uniform_times(rng, rows["admittime"], rows["dischtime"]),
        text=_long_texts(rng, radiology["text"], missing, NOTE_CHARS["RR"]),
        note_type=pl.lit("RR"),
    )
    filler = filler.with_columns(storetime=pl.col("charttime"), note_seq=pl.int_range(1000, 1000 + pl.len()).over(
        "subject_id"))
    filler = filler.with_columns(note_id=pl.format("{}-RR-{}", "subject_id", "note_seq"))
    padded = pl.concat([radiology, filler.select(radiology.columns).cast(radiology.schema)])
    return padded.sort("subject_id", "charttime", maintain_order=True)


class _GzipTables:
    """One gzip stream per table, a header only before the first batch (a single gzip member per file)."""

    def __init__(self, out: Path) -> None:
        self.out, self.files, self.rows = out, {}, {}

    def append(self, name: str, frame: pl.DataFrame) -> None:
        if name not in self.files:
            path = self.out / f"{name}.csv.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.files[name] = gzip.open(path, "wb", compresslevel=1)
            self.rows[name] = 0
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=self.rows[name] == 0, datetime_format=DATETIME_FORMAT,
                        date_format="%Y-%m-%d")
        self.files[name].write(buffer.getvalue())
        self.rows[name] += frame.height

    def close(self) -> dict[str, int]:
        for handle in self.files.values():
            handle.close()
        return self.rows


def generate_at_scale(out_dir: str | Path, stays: int, seed: int = 0, batch_patients: int = 4000,
                      density: dict[str, int] = MIMIC4_DENSITY, variables_yaml: str | Path = DEFAULT_VARIABLES) -> dict:
    """Write a MIMIC-IV-layout database (hosp/, icu/, note/) with at least ``stays`` ICU stays; returns its
    manifest (also written as ``synthetic_manifest.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary(variables_yaml)
    chart_items, lab_items = variable_itemids(variables_yaml, "chartevents"), variable_itemids(variables_yaml, "labevents")
    tables, written, batch, ids = _GzipTables(out), 0, 0, dict(_ID_BASES)
    while written < stays:
        rng = np.random.default_rng([seed, batch])
        cohort = simulate_cohort(rng, batch_patients)
        ids = renumber(cohort, ids)
        chart = chart_events(rng, cohort, vocab, "mimic4")
        labs = lab_events(rng, cohort).rename({"stay": "adm"})
        notes, _ = note_texts(rng, cohort, "mimic4")
        frames = mimic4_tables(rng, cohort, chart, labs, notes)
        icu = frames["icu/icustays"]
        frames["icu/chartevents"] = pad_chart(rng, frames["icu/chartevents"], icu, density["chartevents"], chart_items)
        frames["hosp/labevents"] = pad_labs(rng, frames["hosp/labevents"], frames["hosp/admissions"],
                                            density["labevents"] * icu.height, lab_items)
        discharge = frames["note/discharge"]
        frames["note/discharge"] = discharge.with_columns(text=pl.concat_str(
            "text", pl.lit("\n\n"), _long_texts(rng, frames["note/radiology"]["text"], discharge.height,
                                                  NOTE_CHARS["DS"] - 800)))
        notes_wanted = density["notes"] * icu.height - discharge.height
        frames["note/radiology"] = pad_notes(rng, frames["note/radiology"], icu, frames["hosp/admissions"], notes_wanted)
        labs = frames["hosp/labevents"]
        frames["hosp/labevents"] = labs.with_columns(labevent_id=pl.int_range(1, labs.height + 1) + tables.rows.get(
            "hosp/labevents", 0))
        for name, frame in frames.items():
            tables.append(name, frame)
        written += icu.height
        batch += 1
    manifest = {"generator": "emerge_ehr.data.synthetic.scale", "layout": "mimic4", "stays": written, "seed": seed,
                "batches": batch, "batch_patients": batch_patients, "density": density, "rows": tables.close()}
    (out / "synthetic_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
