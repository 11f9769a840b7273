"""The time-series stage step by step, on the files of bench/scale.py's sizes: where its time goes, and how each
step grows (a job's wall time also holds its start and whatever shares the machine).

Each size runs in a fresh process, as a job would, on ``{workdir}/stays{N}/results/scale``:

    .venv/bin/python bench/timeseries_steps.py 18295 73181     # after bench/scale.py ran those sizes
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def measure(results: Path) -> dict[str, float]:
    """Seconds of each step of ``stages.build_timeseries`` on one size's events and cohort."""
    import numpy as np
    import polars as pl
    import yaml

    from emerge_ehr.data import timeseries
    from emerge_ehr.data.variables import load_variables
    from emerge_ehr.stages import write_parquet_atomically

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    definitions = load_variables(str(REPO / config["variables"]))
    seconds, started = {}, time.perf_counter()

    def step(name: str) -> None:
        nonlocal started
        seconds[name] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()

    cohort = pl.read_parquet(results / "cohort.parquet")
    events = pl.scan_parquet(results / "events.parquet").join(
        cohort.lazy().select("stay_id"), on="stay_id", how="semi").collect()
    step("read")
    events.sort("stay_id", "hour", "charttime", "source", "itemid", "value")
    step("sort (alone)")
    hourly = timeseries.hourly_table(events.lazy(), definitions).collect()
    step("hourly table (sort included)")
    stats = timeseries.observed_statistics(hourly, cohort, definitions)
    features = timeseries.build_features(hourly, cohort, definitions, config["timeseries"]["hours"], stats)
    step("feature array")
    with tempfile.TemporaryDirectory() as scratch:
        write_parquet_atomically(hourly, Path(scratch) / "hourly.parquet")
        np.save(Path(scratch) / "features.npy", features)
    step("write")
    return {"events": events.height, "stays": cohort.height} | seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stays", type=int, nargs="+", help="sizes bench/scale.py ran (its --stays)")
    parser.add_argument("--workdir", type=Path, default=REPO / "resources" / "bench" / "scale")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the child process: measure one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    runs = []
    for stays in args.stays:
        results = args.workdir / f"stays{stays}" / "results" / "scale"
        if not (results / "events.parquet").exists():
            sys.exit(f"{results / 'events.parquet'} is missing: run bench/scale.py --stays {stays} first")
        child = subprocess.run([sys.executable, __file__, "0", "--one", str(results)], check=True,
                               capture_output=True, text=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    steps = [key for key in runs[0] if key not in ("events", "stays")]
    print("| step | " + " | ".join(f"{r['stays']:,} stays, {r['events']:,} events: s" for r in runs)
          + " | k (time) |")
    print("|---" * (len(runs) + 2) + "|")
    for name in [*steps, "in all"]:
        values = [sum(r[s] for s in steps if s != "sort (alone)") if name == "in all" else r[name] for r in runs]
        k = [f"{math.log(b / a) / math.log(rb['stays'] / ra['stays']):.2f}" if a > 0 else "-"
             for a, b, ra, rb in zip(values, values[1:], runs, runs[1:])]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {', '.join(k)} |")


if __name__ == "__main__":
    main()
