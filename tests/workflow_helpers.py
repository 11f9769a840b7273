"""Running the repository's workflow from tests: real Snakemake in a scratch working directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO
from kg_fixture import write_primekg_fixture

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def targets(dataset: str) -> list[str]:
    """Everything up to the knowledge context and the baseline metrics: the LLM stages have their own test."""
    return [f"results/{dataset}/metrics/summary.md", f"results/{dataset}/context.parquet",
            f"results/{dataset}/notes.parquet", f"results/{dataset}/plots/mortality/roc.png"]


def snakemake(workdir: Path, config: Path | dict, *args: str, check: bool = True,
              env: dict | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the repository's workflow with ``config`` replacing the default, in ``workdir``."""
    if isinstance(config, dict):
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        config = path
    env = os.environ | (env or {})
    cache = ["--cache"] if "SNAKEMAKE_OUTPUT_CACHE" in env else []  # the session's public resources (conftest)
    cmd = SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config),
                       "--replace-workflow-config", *cache, "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def load_config(name: str, workdir: Path | None = None) -> dict:
    """A test config; with ``workdir``, its knowledge graph is a small PrimeKG-format fixture (the session's, see
    conftest's public_resources, else written there) and its cache folder is the run's own.

    (The built-in graph takes minutes to index; the PrimeKG path is what these tests exercise.)
    """
    config = yaml.safe_load((REPO / "tests" / "configs" / name).read_text())
    if workdir is not None:
        shared = os.environ.get("EMERGE_TEST_PRIMEKG")  # written once: a rewrite would make every run's graph stale
        root = Path(shared) if shared else write_primekg_fixture(workdir / "primekg")
        config["knowledge_graph"] = {"name": "fixture", "kind": "primekg", "root": str(root)}
        config["cache_dir"] = str(workdir / "cache")
    # Small encoder calls: a tiny cohort has few texts of each length, and each length costs one whole call of
    # text_encoder.batch_tokens (fixed call shapes: a vector is the same whatever is embedded with it)
    config.setdefault("text_encoder", {}).setdefault("batch_tokens", 2048)
    return config


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs per rule that a dry run would execute (from Snakemake's job-stats table)."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    jobs.pop("total", None)
    return jobs


def planned_rules(result: subprocess.CompletedProcess) -> set[str]:
    return set(planned_jobs(result))


def cached_rows(directory: Path, pattern: str, table: str = "answers") -> int:
    """Rows of one table (LLM answers, or vectors: "embeddings") in the cache's files, read as a bystander:
    read-only, taking no lock."""
    import sqlite3

    count = 0
    for path in directory.glob(pattern):
        try:
            with sqlite3.connect(f"{path.as_uri()}?mode=ro&nolock=1", uri=True) as segment:
                count += segment.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.Error:  # created, its table not yet
            pass
    return count
