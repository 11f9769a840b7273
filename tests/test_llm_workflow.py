"""The workflow with its LLM stages on the real engine (tests/configs/tiny-llm.yaml), run once from scratch for the
module: the stages in shards and their cache, and the reproducibility contract (a second run, killed in its LLM and
embedding jobs and resumed, writes the same bytes)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from emerge_ehr.llm.summarize import SUMMARY_COLUMNS
from emerge_ehr.reproducibility import MANIFEST, compare, comparison_markdown

from conftest import REPO, copy_run
from workflow_helpers import SNAKEMAKE, cached_rows, load_config, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llm_run(tmp_path_factory) -> Path:
    """The tiny configuration with the LLM stages (tests/configs/tiny-llm.yaml), run once from scratch without
    interruption; tests that change it work on a copy (``copy_run``)."""
    pytest.importorskip("vllm")
    workdir = tmp_path_factory.mktemp("tinyllm")
    snakemake(workdir, load_config("tiny-llm.yaml", workdir))
    return workdir


def llm_counts(workdir) -> dict[str, int]:
    """Prompts, cache hits and LLM calls of the last run of each LLM shard job, from the jobs' logs (the stats
    files say only what the answers were, the same in every run)."""
    counts = {"jobs": 0, "prompts": 0, "hits": 0, "calls": 0}
    for log in (workdir / "logs").rglob("*shard*.log"):
        found = re.findall(r"(\d+) prompts, (\d+) cache hits, (\d+) LLM calls", log.read_text())
        if log.parent.name in ("entities", "summaries") and found:
            prompts, hits, calls = map(int, found[-1])
            counts = {"jobs": counts["jobs"] + 1, "prompts": counts["prompts"] + prompts,
                      "hits": counts["hits"] + hits, "calls": counts["calls"] + calls}
    return counts


def test_llm_stages_run_the_real_engine_in_shards_and_rerun_without_calls(tiny_llm_run, tmp_path):
    tmp_path = copy_run(tiny_llm_run, tmp_path / "run")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    results = tmp_path / "results" / "tinyllm"
    entities = pl.read_parquet(results / "entities.parquet")
    assert set(entities.get_column("method")) <= {"lexicon", "llm"} and entities.height > 0
    summaries = pl.read_parquet(results / "summaries.parquet")
    assert dict(summaries.schema) == SUMMARY_COLUMNS
    stays = pl.read_parquet(results / "cohort.parquet").height
    assert summaries.height == len(config["tasks"]) * stays and summaries.get_column("status").is_in(["ok", "empty", "failed"]).all()
    assert summaries.filter(pl.col("status") == "ok").height > 0
    # late fusion through the workflow: the GRU's stage, then the text's, with the text stage's own learning rate
    late = json.loads((results / "models/mortality/emerge_late/seed0/summary.json").read_text())
    assert list(late["stages"]) == ["series", "text"] and late["settings"]["text_learning_rate"] == 0.01
    # the cross-attention EMERGE trains in stages by default (train.schedule), and the ablation table compares it
    staged = json.loads((results / "models/mortality/emerge/seed0/summary.json").read_text())
    assert list(staged["stages"]) == ["series", "text"] and staged["settings"]["schedule"] == "staged"
    ablations = (results / "metrics/ablations.md").read_text()
    assert "| EMERGE (cross-attention, staged) beats the time series | mortality | emerge | gru |" in ablations
    first = llm_counts(tmp_path)
    assert first["calls"] > 0 and first["jobs"] == 4
    # The same stages in three shards each (one cache folder, each job writing only its own segment): every
    # prompt is asked again in exactly one shard and answered from the two-shard run's cache, the engine is never
    # started, and the gathered tables equal the two-shard run's: N shards give the result of one.
    entities_before = entities.sort(entities.columns)
    config["llm_entities"]["shards"] = config["summaries"]["shards"] = 3
    snakemake(tmp_path, config, "results/tinyllm/entities.parquet", "results/tinyllm/summaries.parquet")
    again = llm_counts(tmp_path)
    assert again["jobs"] == 6 and again["calls"] == 0
    assert again["hits"] == first["calls"] + first["hits"] and again["prompts"] == first["prompts"]
    llm_logs = [p.read_text() for p in (tmp_path / "logs" / "tinyllm").rglob("*shard*.log")
                if p.parent.name in ("entities", "summaries")]
    assert len(llm_logs) == 6 and not any("vLLM engine started" in text for text in llm_logs)
    assert pl.read_parquet(results / "summaries.parquet").equals(summaries)
    entities_after = pl.read_parquet(results / "entities.parquet")
    assert entities_after.sort(entities_after.columns).equals(entities_before)
    # one sealed segment per job that asked the LLM; none left open
    segments = [p.name for p in (tmp_path / "cache" / "llm-answers").iterdir()]
    assert len(segments) == 4 and not any(name.endswith(".open.sqlite") for name in segments)


def _start(workdir, *args) -> subprocess.Popen:
    """The workflow in the background, in its own process group (so that a kill reaches its jobs too)."""
    cmd = SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                       str(workdir / "config.yaml"), "--replace-workflow-config", "--cores", "2", *args]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill_when(process: subprocess.Popen, ready, what: str, seconds: float = 900) -> None:
    """Kill the run and all its jobs (SIGKILL, as a node failure or an out-of-time job) once ``ready()``."""
    import os
    import signal

    deadline = time.monotonic() + seconds
    while not ready():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _task_embedding_written(workdir) -> bool:
    """The task's embedding job (after every LLM job: it reads the summaries) has stored some of its vectors."""
    return cached_rows(workdir / "cache", "embeddings-*/*embeddings-mortality.npz-*.open.sqlite", "embeddings") >= 1


@pytest.mark.extended  # about 4 min on 2 cores after the shared tiny run: make test-extended (with it, CI would pass 30 min)
def test_a_run_from_scratch_killed_in_its_llm_and_embedding_jobs_and_resumed_gives_the_same_bytes(
        tiny_llm_run, tmp_path):
    """The reproducibility contract on one machine: a second run of one configuration, every result and cache
    gone, killed (SIGKILL, every job with it) once in the middle of an LLM job, with some of its batches answered,
    and once in an embedding job, then resumed, writes every file under results/{dataset}/ with the same bytes as
    an uninterrupted run; only the run manifest differs. (The public resources, the synthetic tables, the graph,
    its index and the converted model, are kept from the first run: they are the same inputs, and building them
    again would only cost CI time.)"""
    workdir = copy_run(tiny_llm_run, tmp_path / "again")
    for derived in ("results", "cache", "logs"):
        shutil.rmtree(workdir / derived)
    _kill_when(_start(workdir), lambda: cached_rows(workdir / "cache" / "llm-answers", "*.open.sqlite") >= 1, "LLM job with an answered batch")
    snakemake(workdir, workdir / "config.yaml", "--unlock")  # as after any killed run
    # in the embedding job that follows the LLM stages, so that no LLM job is killed twice
    _kill_when(_start(workdir, "--rerun-incomplete"), lambda: _task_embedding_written(workdir), "embedding job")
    assert not (workdir / "results" / "tinyllm" / "embeddings" / "mortality.npz").exists()  # killed inside the job
    snakemake(workdir, workdir / "config.yaml", "--unlock")
    snakemake(workdir, workdir / "config.yaml", "--rerun-incomplete")
    differing = compare(tiny_llm_run / "results" / "tinyllm", workdir / "results" / "tinyllm")
    assert differing == [], comparison_markdown(differing, "uninterrupted", "killed and resumed", 0)
    manifests = [json.loads((run / "results/tinyllm" / MANIFEST).read_text()) for run in (tiny_llm_run, workdir)]
    configs = [(run / "config.yaml").read_text() for run in (tiny_llm_run, workdir)]
    assert configs[0] != configs[1] and configs[0].replace(str(tiny_llm_run), str(workdir)) == configs[1]
    # the two configurations differ in their folders only (copy_run), and the hash sees it
    assert manifests[0]["config_sha256"] != manifests[1]["config_sha256"]
    assert manifests[0]["inputs"] == manifests[1]["inputs"] and manifests[0]["inputs"]
