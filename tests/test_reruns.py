"""The partial-rerun moves of the README, each a real Snakemake run on the tiny MIMIC-IV config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO
from workflow_helpers import SNAKEMAKE, load_config, planned_jobs, planned_rules, snakemake, targets

pytestmark = pytest.mark.slow

DOWNSTREAM_OF_ALIGN = {"align", "retrieve"}


def result_files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir / "results")) for p in (workdir / "results").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def reruns(tmp_path_factory):
    """A tiny run made in two steps: first ``--until align`` (what it left is kept), then everything."""
    workdir = tmp_path_factory.mktemp("reruns")
    config = load_config("tiny-mimic4.yaml", workdir)
    snakemake(workdir, config, "--until", "align", "--", "results/tiny/context.parquet")
    until_align = result_files(workdir)
    snakemake(workdir, config, *targets("tiny"))
    return workdir, config, until_align


def test_until_runs_the_stages_up_to_one_and_no_further(reruns):
    workdir, _, until_align = reruns
    assert "tiny/aligned.parquet" in until_align and "tiny/cohort.parquet" in until_align
    assert not [f for f in until_align if f.startswith(("tiny/models/", "tiny/metrics/", "tiny/context"))]
    assert "tiny/context.parquet" in result_files(workdir)


def test_changing_one_setting_reruns_only_the_stages_it_touches(reruns):
    # (Snakemake 9.27's --list-changes params lists every output with recorded params, changed or not, so the
    # README points to the dry run, whose job list and reasons are exact.)
    workdir, config, _ = reruns
    changed = json.loads(json.dumps(config))
    changed["align"] = {"threshold": 0.9}
    result = snakemake(workdir, changed, "--dry-run", *targets("tiny"))
    assert planned_rules(result) == DOWNSTREAM_OF_ALIGN
    assert "Params have changed since last execution" in result.stdout + result.stderr


def test_a_single_target_runs_one_task_and_model_only(reruns):
    workdir, config, _ = reruns
    changed = json.loads(json.dumps(config))
    changed.setdefault("model_settings", {})["gru"] = {"hidden_size": 32}
    jobs = planned_jobs(snakemake(workdir, changed, "--dry-run", "results/tiny/metrics/mortality/gru.json"))
    assert jobs == {"train": len(config["train"]["seeds"]), "evaluate": 1}


def test_forcerun_reruns_a_stage_and_what_depends_on_it(reruns):
    workdir, config, _ = reruns
    jobs = planned_jobs(snakemake(workdir, config, "--dry-run", "--forcerun", "retrieve", "--", *targets("tiny")))
    assert jobs == {"retrieve": 1}  # the tiny targets use no text model: nothing else reads the context
    jobs = planned_jobs(snakemake(workdir, config, "--dry-run", "--forcerun", "timeseries", "--", *targets("tiny")))
    runs = len(config["models"]) * len(config["train"]["seeds"]) * 2  # every model, seed and task
    assert jobs == {"timeseries": 1, "train": runs, "evaluate": 2 * len(config["models"]), "plots": 1,
                    "metrics_table": 1}


def test_rerun_incomplete_recovers_a_killed_training_job(reruns):
    workdir, config, _ = reruns
    target = "results/tiny/models/mortality/gru/seed0/predictions.parquet"
    before = pl.read_parquet(workdir / target)
    cmd = SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                       str(workdir / "config.yaml"), "--replace-workflow-config", "--cores", "1",
                       "--forcerun", "train", "--", target]
    process = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    marker = workdir / ".snakemake" / "incomplete"
    deadline = time.monotonic() + 120
    while not (marker.is_dir() and any(marker.iterdir())) and time.monotonic() < deadline:
        assert process.poll() is None, "the forced training finished before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole job, as a crash or a cancelled cluster job would
    process.wait()
    assert any(marker.iterdir()), "Snakemake should have recorded the job as incomplete"
    locked = snakemake(workdir, config, "--rerun-incomplete", target, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stderr  # a killed run leaves its lock behind
    snakemake(workdir, config, "--unlock")
    snakemake(workdir, config, "--rerun-incomplete", target)
    assert not any(marker.iterdir())
    assert pl.read_parquet(workdir / target).equals(before)  # deterministic given the seed
    assert planned_rules(snakemake(workdir, config, "--dry-run", *targets("tiny"))) == set()


def test_public_resources_come_from_the_between_workflow_cache(tmp_path):
    config = load_config("tiny-mimic4.yaml", tmp_path)  # one PrimeKG fixture shared by both workflows
    index = "resources/kg/fixture/minilm/index.faiss"
    env = {"SNAKEMAKE_OUTPUT_CACHE": str(tmp_path / "output-cache")}
    (tmp_path / "output-cache").mkdir()
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        # each working directory with its own embedding cache folder: where vectors are kept is no parameter
        config["cache_dir"] = str(tmp_path / name / "cache")
        result = snakemake(tmp_path / name, config, "--cache", "--", index, env=env)
    log = result.stdout + result.stderr
    # fetched, not built again ("from cache" alone is also printed when a job's new output is stored and linked back)
    assert "nodes.parquet from cache" in log and "nodes.parquet to cache" not in log
    assert "index.faiss from cache" in log and "index.faiss to cache" not in log
    assert (tmp_path / "second" / index).read_bytes() == (tmp_path / "first" / index).read_bytes()


def test_only_public_resources_are_eligible_for_the_cache():
    cached = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        rule = None
        for line in path.read_text().splitlines():
            if line.strip().startswith("rule "):
                rule = line.split()[1].rstrip(":")
            if line.strip().startswith("cache:"):
                cached.add(rule)
    assert cached == {"kg", "kg_index", "llm_model"}  # nothing derived from patient data
