"""The reproducibility contract: one configuration run twice from scratch on one machine, or killed part-way and
resumed, gives the same outputs byte for byte, the run manifest aside; what differs between two runs is listed
with how much (bench/compare_runs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from emerge_ehr.reproducibility import MANIFEST, compare, comparison_markdown, config_sha256

from conftest import REPO, copy_run
from workflow_helpers import SNAKEMAKE, snakemake


def _results(root, probability: float, vector: float, summary: str) -> None:
    root.mkdir(parents=True)
    pl.DataFrame({"stay_id": [1, 2], "probability": [0.25, probability]}).write_parquet(root / "predictions.parquet")
    np.savez(root / "embeddings.npz", notes=np.array([[1.0, vector]], np.float32), mask=np.array([True]))
    (root / "metrics.json").write_text(json.dumps({"auroc": {"value": probability, "ci": [0.1, 0.9]}, "n": 2}))
    (root / "summary.md").write_text(f"| model | AUROC |\n| gru | {summary} |\n")
    (root / MANIFEST).write_text(json.dumps({"written": str(time.time())}))


def test_two_identical_results_folders_compare_equal_the_manifest_aside(tmp_path):
    _results(tmp_path / "a", 0.75, 2.0, "75.0")
    _results(tmp_path / "b", 0.75, 2.0, "75.0")
    assert compare(tmp_path / "a", tmp_path / "b") == []
    assert "byte for byte the same" in comparison_markdown([], "a", "b", 4)


def test_differing_outputs_are_listed_with_how_much_they_differ(tmp_path):
    _results(tmp_path / "a", 0.75, 2.0, "75.0")
    _results(tmp_path / "b", 0.7501, 2.5, "75.01")
    (tmp_path / "a" / "only_here.txt").write_text("x")
    rows = {row["path"]: row for row in compare(tmp_path / "a", tmp_path / "b")}
    assert rows["only_here.txt"]["status"] == "only in a"
    assert rows["predictions.parquet"]["differing"] == 1 and rows["predictions.parquet"]["of"] == 4
    assert rows["predictions.parquet"]["max_abs"] == pytest.approx(1e-4)
    assert rows["embeddings.npz"]["differing"] == 1 and rows["embeddings.npz"]["max_abs"] == 0.5
    assert rows["metrics.json"]["differing"] == 1 and rows["metrics.json"]["max_abs"] == pytest.approx(1e-4)
    assert rows["summary.md"]["differing"] == 1 and rows["summary.md"]["unit"] == "lines"
    assert MANIFEST not in rows
    table = comparison_markdown(list(rows.values()), "a", "b", 5)
    assert "| predictions.parquet | differs | 1  | 4 | 0.0001 |" in table
    cli = subprocess.run([sys.executable, str(REPO / "bench" / "compare_runs.py"), str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True)
    assert cli.returncode == 1 and "5 of 5 files differ" in cli.stdout


def test_the_config_hash_ignores_key_order_and_sees_every_value():
    assert config_sha256({"a": {"b": 1, "c": 2}}) == config_sha256({"a": {"c": 2, "b": 1}})
    assert config_sha256({"a": {"b": 1}}) != config_sha256({"a": {"b": 2}})


def test_the_manifest_names_versions_machine_formats_models_and_hashes_the_inputs(tmp_path):
    from emerge_ehr.reproducibility import file_sha256, write_manifest
    from emerge_ehr.settings import schema_defaults

    config = schema_defaults()
    source = tmp_path / "patients.csv.gz"
    source.write_bytes(b"subject_id\n1\n")
    llm = config["llm"] | {"backend": "openai", "model": "served-model"}
    write_manifest(config, "demo", [str(source)], llm, config["text_encoder"], tmp_path / MANIFEST)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["config_sha256"] == config_sha256(config) and manifest["dataset"] == "demo"
    assert manifest["inputs"] == {str(source): file_sha256(source)}
    assert {"torch", "polars", "python"} <= set(manifest["packages"])
    assert manifest["machine"]["cpu"]["cores"] >= 1 and isinstance(manifest["machine"]["gpus"], list)
    assert manifest["number_formats"]["text_encoder"]["format"] in ("float32", "bfloat16")
    assert manifest["models"]["llm"] == "openai:served-model" and len(manifest["models"]["text_encoder"]) == 16


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


def _answers_cached(workdir) -> int:
    import sqlite3

    count = 0
    for path in (workdir / "cache" / "llm-answers").glob("*.open.sqlite"):
        try:
            with sqlite3.connect(f"{path.as_uri()}?mode=ro&nolock=1", uri=True) as segment:
                count += segment.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        except sqlite3.Error:  # created, its table not yet
            pass
    return count


def _embedding_job_running(workdir) -> bool:
    logs = list((workdir / "logs" / "tinyllm" / "embed").glob("*.log")) if (workdir / "logs").exists() else []
    return any("job resources" not in log.read_text() and log.stat().st_size > 0 for log in logs)


@pytest.mark.slow
def test_a_run_from_scratch_killed_in_its_llm_and_embedding_jobs_and_resumed_gives_the_same_bytes(
        tiny_llm_run, tmp_path):
    """The reproducibility contract on one machine: a second run of one configuration, every result and cache
    gone, killed (SIGKILL, every job with it) once in the middle of an LLM job, with some of its batches answered,
    and once in an embedding job, then resumed, writes every file under results/{dataset}/ with the same bytes as
    an uninterrupted run; only the run manifest differs. (The public resources, the synthetic tables, the graph,
    its index and the converted model, are kept from the first run: they are the same inputs, and building them
    again would only cost CI time.)"""
    import shutil

    workdir = copy_run(tiny_llm_run, tmp_path / "again")
    for derived in ("results", "cache", "logs"):
        shutil.rmtree(workdir / derived)
    _kill_when(_start(workdir), lambda: _answers_cached(workdir) >= 8, "LLM job with answered batches")
    snakemake(workdir, workdir / "config.yaml", "--unlock")  # as after any killed run
    _kill_when(_start(workdir, "--rerun-incomplete"), lambda: _embedding_job_running(workdir), "embedding job")
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
