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
import json
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.data.synthetic.charting import chart_events, lab_events
from emerge_ehr.data.synthetic.conditions import CONDITIONS, NOTE_ONLY  # noqa: F401 (the generator's public facts)
from emerge_ehr.data.synthetic.notes import note_texts
from emerge_ehr.data.synthetic.population import Cohort, simulate_cohort
from emerge_ehr.data.synthetic.vocabulary import DEFAULT_VARIABLES, load_vocabulary
from emerge_ehr.data.synthetic.writers import HEADER_CASES, column_case, mimic3_tables, mimic4_tables, write_tables




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
             variables_yaml: str | Path = DEFAULT_VARIABLES, header_case: str = "as_released") -> None:
    """Write a synthetic MIMIC database (about 1.4 ICU stays per patient) plus its ground truth.

    ``header_case`` (one of HEADER_CASES) sets the case of column names; file names stay as released.
    """
    if layout not in ("mimic4", "mimic3"):
        raise ValueError(f"layout must be 'mimic4' or 'mimic3', not {layout!r}")
    case = column_case(layout, header_case)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = load_vocabulary(variables_yaml)
    cohort = simulate_cohort(rng, n_patients)
    chart = chart_events(rng, cohort, vocab, layout)
    labs = lab_events(rng, cohort).rename({"stay": "adm"})
    notes, mentions = note_texts(rng, cohort, layout)
    tables = (mimic3_tables if layout == "mimic3" else mimic4_tables)(rng, cohort, chart, labs, notes)
    counts = write_tables(tables, out, case)
    truth = _ground_truth(cohort, mentions, layout)
    truth.write_parquet(out / "ground_truth.parquet")
    manifest = {"generator": "emerge_ehr.data.synthetic", "layout": layout, "n_patients": n_patients, "seed": seed,
                "header_case": header_case, "variables_yaml": Path(variables_yaml).name, "rows": counts | {"ground_truth": truth.height}}
    (out / "synthetic_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv=None) -> None:
    """Command line: python -m emerge_ehr.data.synthetic OUT --layout mimic4 --patients 200 --seed 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--layout", choices=("mimic4", "mimic3"), default="mimic4")
    parser.add_argument("--patients", type=int, default=1400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variables", default=str(DEFAULT_VARIABLES))
    parser.add_argument("--header-case", choices=HEADER_CASES, default="as_released")
    args = parser.parse_args(argv)
    generate(args.out_dir, args.layout, args.patients, args.seed, args.variables, args.header_case)


