"""Time and peak memory of the chart-event stages on a large synthetic MIMIC-IV table.

Generates a synthetic MIMIC-IV database with at least ``--rows`` chart events (default 20 million), then
measures, each in a fresh process: ``gzip -dc`` of the chart events (the floor for reading the file at
all), the conversion of the table to Parquet, and the extraction of the 17 variables' events in the first
48 h of every stay from that Parquet. Prints a Markdown table; figures go to docs/PERFORMANCE.md.

    .venv/bin/python bench/chartevents_extraction.py --rows 20000000 --workdir resources/bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART_ROWS_PER_PATIENT = 1090  # measured on the generator's default size

STEP = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
from emerge_ehr import stages
started = time.perf_counter()
{call}
print(json.dumps({{"seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_step(call: str, threads: int) -> dict:
    """Run one stage call in a fresh Python process; return its wall time and peak resident memory."""
    env = {"POLARS_MAX_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    code = STEP.format(src=str(REPO / "src"), call=call)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gzip_seconds(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(f"gzip -dc {path} > /dev/null", shell=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="minimum number of chart events")
    parser.add_argument("--workdir", type=Path, default=REPO / "resources" / "bench")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = args.workdir / "mimic4"
    chart = root / "icu" / "chartevents.csv.gz"
    patients = -(-args.rows // CHART_ROWS_PER_PATIENT)
    manifest = root / "synthetic_manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["n_patients"] != patients:
        print(f"generating a synthetic MIMIC-IV database with {patients} patients ...", flush=True)
        row = run_step(f"stages.synthesize({str(root)!r}, 'mimic4', {patients}, 0, {str(REPO / 'config/variables.yaml')!r})",
                       args.threads)
        print(f"  generated in {row['seconds']:.0f} s", flush=True)
    rows = json.loads(manifest.read_text())["rows"]["icu/chartevents"]
    if rows < args.rows:
        sys.exit(f"the generator made {rows} chart events, fewer than --rows {args.rows}; raise CHART_ROWS_PER_PATIENT")
    parquet = args.workdir / "parquet"
    results = [("gzip -dc chartevents.csv.gz > /dev/null", {"seconds": gzip_seconds(chart), "peak_rss_mb": None})]
    convert = "stages.convert({root!r}, 'mimic4', {table!r}, {out!r})"
    results.append(("convert chartevents (csv.gz -> Parquet)", run_step(
        convert.format(root=str(root), table="chartevents", out=str(parquet / "chartevents.parquet")), args.threads)))
    for table in ("patients", "admissions", "icustays", "labevents"):
        run_step(convert.format(root=str(root), table=table, out=str(parquet / f"{table}.parquet")), args.threads)
    settings = {"min_age": 18, "min_hours": 48, "readmission_definition": "icu", "readmission_window_days": 30,
                "split_fractions": [0.7, 0.1, 0.2], "split_seed": 42}
    call = (
        f"stages.events({str(parquet / 'chartevents.parquet')!r}, {str(parquet / 'labevents.parquet')!r},"
        f" {str(parquet / 'patients.parquet')!r}, {str(parquet / 'admissions.parquet')!r},"
        f" {str(parquet / 'icustays.parquet')!r}, {str(REPO / 'config/variables.yaml')!r}, 48, {settings!r},"
        f" {str(args.workdir / 'events.parquet')!r})"
    )
    results.append(("extract events of the 17 variables (Parquet -> events.parquet)", run_step(call, args.threads)))
    work = args.workdir
    call = (
        f"stages.cohort({str(parquet / 'patients.parquet')!r}, {str(parquet / 'admissions.parquet')!r},"
        f" {str(parquet / 'icustays.parquet')!r}, {str(work / 'events.parquet')!r}, {settings!r},"
        f" {str(work / 'cohort.parquet')!r}, {str(work / 'cohort.json')!r})"
    )
    results.append(("cohort with labels and split", run_step(call, args.threads)))
    call = (
        f"stages.build_timeseries({str(work / 'events.parquet')!r}, {str(work / 'cohort.parquet')!r},"
        f" {str(REPO / 'config/variables.yaml')!r}, 48, {str(work / 'timeseries.parquet')!r},"
        f" {str(work / 'features.npy')!r}, {str(work / 'feature_stats.json')!r})"
    )
    results.append(("hourly table and stays x 48 x 61 features", run_step(call, args.threads)))
    size_mb = chart.stat().st_size / 2**20
    stays = json.loads((work / "cohort.json").read_text())["stays"]
    print(f"\nchart events: {rows:,} rows, {size_mb:,.0f} MB gzip-compressed; {stays:,} cohort stays;"
          f" {args.threads} threads\n")
    print("| step | wall time (s) | peak memory (MB) |\n|---|---|---|")
    for name, row in results:
        memory = "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:,.0f}"
        print(f"| {name} | {row['seconds']:.1f} | {memory} |")


if __name__ == "__main__":
    main()
