"""The default pipeline at MIMIC-IV size: time, CPU time, peak memory and output size of every stage.

For each size (ICU stays; default full MIMIC-IV v2.2 / 16, / 4 and full), generates a synthetic MIMIC-IV with
MIMIC-IV's per-stay density of chart events, lab events and notes (emerge_ehr.data.synthetic.scale), then runs
the workflow on it with Snakemake, every stage in full except two, which are sampled and projected:
- the LLM stages: LLM entities and summaries run on ``--llm-sample`` prompts of the largest size's own notes
  and contexts, and their time is projected from the measured rate to every prompt of the run (in the
  pipeline run itself, entities come from the lexicon and the summaries are the knowledge text);
- training: ``--models`` (one seed) for at most ``--epochs`` epochs; a job's time is projected to the default
  run's 16 models x 3 seeds with each model's epochs from the smaller sizes' full trainings.
Every job logs its wall time, CPU time and exact peak memory (emerge_ehr.runtime); this script tabulates them
per rule with the growth exponent between sizes (log time ratio / log size ratio: 1 is linear).

    .venv/bin/python bench/scale.py --stays 4573 --llm-sample 0           # a small size, the whole pipeline
    .venv/bin/python bench/scale.py --stays 73181 --epochs 3 --embed-shards 16 --llm-sample 150 \
        --targets results/scale/knowledge.parquet results/scale/embeddings/notes/shard0.json ...   # full size
    .venv/bin/python bench/scale.py --stays 73181 ... --forcerun results/scale/parquet/notes.parquet  # again
    .venv/bin/python bench/scale.py --table-only                          # the table over the sizes so far

Each call adds its sizes to ``{workdir}/scale.json`` and prints the table of docs/PERFORMANCE.md over every
size measured so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic.scale import FULL_MIMIC4_STAYS, generate_at_scale  # noqa: E402

RESOURCES = re.compile(r"job resources: wall ([\d.]+) s, CPU ([\d.]+) s, peak memory (\d+) MB")
DEFAULT_MODELS = ["logreg", "gbm", "gru", "transformer", "emerge_knowledge", "emerge_knowledge_late"]


def scale_config(root: Path, workdir: Path, models: list[str], max_epochs: int, embed_shards: int) -> dict:
    """The default configuration on the generated database, with the sampled stages cut down."""
    return {
        "embed": {"shards": embed_shards},
        "datasets": {"scale": {"kind": "mimic4", "root": str(root), "notes_root": str(root / "note")}},
        "entities": {"methods": ["lexicon"]},
        "summaries": {"method": ["knowledge"]},
        "models": models,
        "train": {"seeds": [0], "max_epochs": max_epochs},
        "scarcity": {"models": []},
        "explain": {"models": [m for m in models if m in ("gru", "emerge_knowledge_late")]},
        "cache_dir": str(workdir / "cache"),
    }


def log_rules(snakemake_output: str) -> dict[str, str]:
    """Each job's log file -> its rule, from Snakemake's job announcements (``rule X:`` ... ``log: path``)."""
    rules, rule = {}, None
    for line in snakemake_output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"^\s+log: (\S+)", line)):
            rules[match.group(1).rstrip(",")] = rule
    return rules


def snakemake_output(workdir: Path) -> str:
    """Every Snakemake run's output in ``workdir``: the runs this script finished (``snakemake.log``) and
    Snakemake's own log of each run, written as it goes, so that a run killed after hours still names the rule of
    every job it finished (``--table-only``)."""
    logs = [workdir / "snakemake.log", *sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))]
    return "\n".join(log.read_text(errors="replace") for log in logs if log.exists())


def job_table(workdir: Path, rules: dict[str, str]) -> list[dict]:
    """One row per job: its rule (train: with the model), wall and CPU seconds, peak memory."""
    rows = []
    for log in sorted((workdir / "logs" / "scale").rglob("*.log")):
        found = RESOURCES.findall(log.read_text(errors="replace"))
        if found:
            path = log.relative_to(workdir).as_posix()
            rule = rules.get(path, path)
            if rule.startswith("train"):
                rule = f"{rule} {path.split('/')[4]}"  # logs/scale/train/{task}/{model}/seed{seed}.log
            wall, cpu, peak = map(float, found[-1])
            rows.append({"job": path, "rule": rule, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak})
    return rows


def run_size(stays: int, args) -> dict:
    workdir = args.workdir / f"stays{stays}"
    root = workdir / "mimic4"
    manifest_path = root / "synthetic_manifest.json"
    started = time.perf_counter()
    generated = not manifest_path.exists() or json.loads(manifest_path.read_text())["stays"] < stays
    if generated:
        generate_at_scale(root, stays, seed=args.seed)
    generation = {"generation_s": round(time.perf_counter() - started, 1)} if generated else {}
    manifest = json.loads(manifest_path.read_text())
    resources = workdir / "resources"
    if resources.is_symlink() and resources.resolve() != REPO / "resources":
        resources.unlink()  # the size's folder was made by another checkout
    if not resources.exists():
        resources.symlink_to(REPO / "resources")  # the knowledge graph, its index and the LLM, built once
    config = scale_config(root, workdir, args.models, args.epochs, args.embed_shards)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--replace-workflow-config",
               "--cores", str(args.cores), "--keep-going", *args.targets,
               *(["--forcerun", *args.forcerun] if args.forcerun else []),
               # the shared knowledge-graph index is built once: not again for each size's own cache folder
               "--rerun-triggers", "mtime"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    pipeline = time.perf_counter() - started
    log = workdir / "snakemake.log"  # every run's output, so that the rule of each job's log stays known
    log.write_text((log.read_text() if log.exists() else "") + result.stdout + result.stderr)
    rules = log_rules(snakemake_output(workdir))
    results = workdir / "results" / "scale"
    sizes = {p.relative_to(results).as_posix(): p.stat().st_size for p in results.rglob("*") if p.is_file()}
    cohort = json.loads((results / "cohort.json").read_text()) if (results / "cohort.json").exists() else {}
    return generation | {
        "stays": manifest["stays"], "rows": manifest["rows"], "pipeline_s": round(pipeline, 1),
        "returncode": result.returncode, "cohort_stays": cohort.get("stays"), "jobs": job_table(workdir, rules),
        "output_bytes": sizes, "trainings": trainings(results)}


def trainings(results: Path) -> dict:
    """Epochs run, training stays and throughput of every trained model (its summary.json)."""
    found = {}
    for path in results.glob("models/*/*/seed*/summary.json"):
        summary = json.loads(path.read_text())
        task, model = path.parts[-4], path.parts[-3]
        found[f"{task}/{model}"] = {k: summary.get(k) for k in ("epochs_run", "best_epoch", "train_stays", "stages")}
    return found


def llm_sample(stays: int, args) -> dict:
    """LLM entities and summaries on a sample of the largest run's notes and contexts: prompts per second, and
    each stage's peak memory as a job (a fresh process, the job's allocator, its ``job resources`` line)."""
    import shutil
    from dataclasses import fields

    import polars as pl

    from emerge_ehr.llm.backends import LLMSettings

    results = args.workdir / f"stays{stays}" / "results" / "scale"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    sample = args.workdir / "llm-sample"
    shutil.rmtree(sample / "cache", ignore_errors=True)  # every prompt answered by the engine, none cached
    sample.mkdir(exist_ok=True)
    counts = {}
    for name in ("notes", "context"):
        table = pl.read_parquet(results / f"{name}.parquet")
        counts[name] = table.height
        table.sample(min(args.llm_sample, table.height), seed=0).write_parquet(sample / f"{name}.parquet")
    accepted = {field.name for field in fields(LLMSettings)}  # the engine's settings, as the workflow passes
    llm = {k: v for k, v in config["llm"].items() if k in accepted}
    llm["model"] = str(REPO / config["llm"]["model"])
    extraction = {k: v for k, v in config["llm_entities"].items() if k != "shards"}
    summary = {k: v for k, v in config["summaries"].items() if k not in ("shards", "method")}
    abbreviations, cache = str(REPO / config["entities"]["abbreviations"]), str(sample / "cache")
    measured = {}
    for name, stage, call in (
        ("llm_entities", "entities", ["notes.parquet", abbreviations, 0, 1, llm, extraction, cache]),
        ("summarize", "summaries", ["context.parquet", 0, 1, llm, summary, cache]),
    ):
        call[0] = str(sample / call[0])
        call += [str(sample / f"{stage}.parquet"), str(sample / f"{stage}.json")]
        log = sample / f"{stage}.log"
        code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'src')!r})\n"
                "from emerge_ehr.runtime import start_job\n"
                f"start_job({args.cores}, {str(log)!r}, fast_allocator=True)\n"
                f"from emerge_ehr.llm import stages; stages.{name}(*json.loads(sys.argv[1]))")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, json.dumps(call)], check=True)
        seconds = time.perf_counter() - started
        wall, cpu, peak = RESOURCES.findall(log.read_text())[-1]
        measured[name] = json.loads((sample / f"{stage}.json").read_text()) | steady_rate(log.read_text()) | {
            "wall_s": seconds, "job_cpu_s": float(cpu), "peak_mb": int(peak)}
    return measured | {"notes_in_run": counts["notes"], "contexts_in_run": counts["context"],
                       "sample_notes": min(args.llm_sample, counts["notes"]),
                       "sample_contexts": min(args.llm_sample, counts["context"])}


PROGRESS = re.compile(r"^(\S+ \S+),\d+ .*attempt 1: (\d+) of \d+ uncached prompts", re.M)


def steady_rate(job_log: str) -> dict:
    """Prompts per second after the first answers (and how many those were): a job pays the engine's start and
    warm-up once (about 50 s here), so a shard of 88,000 prompts runs at the steady rate.

    >>> steady_rate("2026-12-07 05:37:01,562 INFO x: attempt 1: 1 of 9 uncached prompts (...)\\n"
    ...             "2026-12-07 05:37:11,000 INFO x: attempt 1: 9 of 9 uncached prompts (...)")
    {'first_answers': 1, 'steady_prompts_per_second': 0.8}
    """
    from datetime import datetime

    points = [(datetime.fromisoformat(stamp), int(done)) for stamp, done in PROGRESS.findall(job_log)]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return {}
    (start, first), (end, last) = points[0], points[-1]
    seconds = (end - start).total_seconds()
    return {"first_answers": first, "steady_prompts_per_second": (last - first) / seconds}


def exponent(small: float, large: float, n_small: int, n_large: int) -> float | None:
    """Growth exponent: time ~ size^k between two sizes (k = 1 linear); None where too small to tell.

    >>> round(exponent(10.0, 100.0, 1000, 10000), 2)
    1.0
    """
    if small < 5 or large <= 0:
        return None
    return math.log(large / small) / math.log(n_large / n_small)


def per_stage(run: dict) -> dict[str, dict]:
    stages: dict[str, dict] = {}
    for job in run["jobs"]:
        row = stages.setdefault(job["rule"], {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "peak_mb": 0.0})
        row["jobs"] += 1
        row["wall_s"] += job["wall_s"]
        row["cpu_s"] += job["cpu_s"]
        row["peak_mb"] = max(row["peak_mb"], job["peak_mb"])
    return stages


def markdown(runs: list[dict]) -> str:
    """Per stage and size: wall s / CPU s / peak MB; the growth exponents between consecutive sizes."""
    if not runs:
        return "no size measured yet"
    tables = [per_stage(run) for run in runs]
    header = " | ".join(f"{run['stays']:,} stays: wall s / CPU s / peak MB" for run in runs)
    lines = [f"| stage (jobs at the largest size) | {header} | exponent (time) | exponent (memory) |",
             "|---" * (len(runs) + 3) + "|"]
    fmt = lambda k: "-" if k is None else f"{k:.2f}"  # noqa: E731
    for stage in sorted(tables[-1], key=lambda s: -tables[-1][s]["wall_s"]):
        cells, k_time, k_mem = [], [], []
        for table in tables:
            row = table.get(stage)
            cells.append(f"{row['wall_s']:,.0f} / {row['cpu_s']:,.0f} / {row['peak_mb']:,.0f}"
                         if row else "-")
        for (small, run_small), (large, run_large) in zip(zip(tables, runs), zip(tables[1:], runs[1:])):
            first, last = small.get(stage), large.get(stage)
            shards = run_small.get("embed_shards"), run_large.get("embed_shards")
            same_work = first is not None and last is not None and first["jobs"] == last["jobs"]
            comparable = same_work and (stage != "embed_notes" or shards[0] == shards[1])
            sizes = run_small["stays"], run_large["stays"]
            k_time.append(exponent(first["wall_s"], last["wall_s"], *sizes) if comparable else None)
            k_mem.append(exponent(first["peak_mb"], last["peak_mb"], *sizes) if comparable else None)
        lines.append(f"| {stage} ({tables[-1][stage]['jobs']}) | {' | '.join(cells)} | "
                     f"{', '.join(map(fmt, k_time))} | {', '.join(map(fmt, k_mem))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, nargs="+",
                        default=[FULL_MIMIC4_STAYS // 16, FULL_MIMIC4_STAYS // 4, FULL_MIMIC4_STAYS])
    parser.add_argument("--workdir", type=Path, default=REPO / "resources" / "bench" / "scale")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--epochs", type=int, default=100, help="train.max_epochs (early stopping applies)")
    parser.add_argument("--llm-sample", type=int, default=200, help="notes and contexts for the LLM stages")
    parser.add_argument("--embed-shards", type=int, default=1, help="embed.shards")
    parser.add_argument("--targets", nargs="*", default=[],
                        help="run only up to these outputs (relative to the size's folder)")
    parser.add_argument("--forcerun", nargs="*", default=[],
                        help="outputs to compute again, with all after them (to re-measure a changed stage)")
    parser.add_argument("--table-only", action="store_true", help="re-read the logs of the sizes run so far")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = args.workdir / "scale.json"
    report = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    report["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gb": round(memory / 2**30, 1)}
    sizes = [] if args.table_only else sorted(args.stays)
    for key, run in report["runs"].items() if args.table_only else ():
        workdir = args.workdir / f"stays{key}"
        if (workdir / "logs").is_dir():  # a size measured elsewhere (its logs not here) keeps its recorded jobs
            run["jobs"] = job_table(workdir, log_rules(snakemake_output(workdir)))
        out.write_text(json.dumps(report, indent=1) + "\n")
    for name, stage in (("llm_entities", "entities"), ("summarize", "summaries")) if args.table_only else ():
        log = args.workdir / "llm-sample" / f"{stage}.log"
        if name in report.get("llm_sample", {}) and log.exists():
            report["llm_sample"][name] |= steady_rate(log.read_text())
            out.write_text(json.dumps(report, indent=1) + "\n")
    for stays in sizes:
        print(f"{stays} stays ...", flush=True)
        settings = {"max_epochs": args.epochs, "targets": args.targets, "embed_shards": args.embed_shards}
        # a later call on the same size (to re-measure a stage) keeps the generation time of the first
        report["runs"][str(stays)] = report["runs"].get(str(stays), {}) | run_size(stays, args) | settings
        out.write_text(json.dumps(report, indent=1) + "\n")
    if args.llm_sample and sizes:
        report["llm_sample"] = llm_sample(sizes[-1], args)
        out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown([report["runs"][key] for key in sorted(report["runs"], key=int)]))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
