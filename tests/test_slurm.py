"""The tiny pipeline through profiles/slurm on a real single-node SLURM cluster on loopback.

The cluster (slurmctld, slurmd and a private munged, Debian's packages installed where missing) lives in a
temporary folder and is stopped at the end. It has one fake GPU, so that the GPU requests of the training jobs
are scheduled as on a real GPU node (the jobs still compute on the CPU).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO
from workflow_helpers import load_config, snakemake

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).parent / "slurm"
TARGET = "results/tiny/metrics/mortality/gru.json"
# The test cluster has no accounting database, so jobs are followed with squeue (see profiles/slurm).
TEST_OVERRIDES = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                  "--slurm-keep-successful-logs", "--jobs", "4"]


def _can_install() -> str | None:
    """Why this machine cannot run a SLURM cluster, or None."""
    have = all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged"))
    if have:
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root"
    if not shutil.which("apt-get"):
        return "SLURM is not installed and this machine has no apt-get to install Debian's slurm-wlm and munge"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _can_install()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm") / "cluster"
    env = os.environ | {"SLURM_LAB_DIR": str(folder), "FAKE_GPUS": "1"}
    started = subprocess.run([str(SCRIPTS / "start_cluster.sh")], env=env, capture_output=True, text=True,
                             timeout=600)
    if started.returncode != 0:
        subprocess.run([str(SCRIPTS / "stop_cluster.sh")], env=env, capture_output=True, timeout=120)
        if "apt-get" in started.stdout + started.stderr and "E:" in started.stderr:
            pytest.skip(f"could not install SLURM from Debian's packages:\n{started.stderr[-2000:]}")
        raise AssertionError(f"the test cluster did not start:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
    client = {"SLURM_CONF": str(folder / "etc" / "slurm.conf"), "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"}
    try:
        yield client
    finally:
        stopped = subprocess.run([str(SCRIPTS / "stop_cluster.sh")], env=env, capture_output=True, text=True,
                                 timeout=300)
        assert stopped.returncode == 0, stopped.stderr
        assert not folder.exists()


def _config(workdir: Path) -> dict:
    config = load_config("tiny-mimic4.yaml", workdir)
    config["train"]["gpus"] = 1
    return config


@pytest.mark.extended  # about 4 min: make test-extended (a job through SLURM stays in make test, below)
def test_pipeline_through_slurm_matches_a_local_run(tmp_path, cluster):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir(), local.mkdir()
    result = snakemake(on_slurm, _config(on_slurm), "--workflow-profile", str(REPO / "profiles" / "slurm"),
                       *TEST_OVERRIDES, TARGET, env=cluster, timeout=1500)
    log = result.stdout + result.stderr
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    assert len(submitted) >= 10, log[-3000:]  # synthesize, convert x6, events, cohort, timeseries, train x2, ...
    # Each job ran inside SLURM: the plugin kept its sbatch log, and slurmctld knows it as completed.
    kept = {p.stem for p in (on_slurm / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(submitted.values()) <= kept
    run = re.search(r"SLURM run ID: (\S+)", log).group(1)
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run, "--format=%i|%T|%k"],
                           env=os.environ | cluster, capture_output=True, text=True, check=True).stdout.split()
    jobs = {row.split("|")[0]: row.split("|")[1:] for row in queue}
    assert set(jobs) == set(submitted.values()) and all(state == "COMPLETED" for state, _ in jobs.values())
    training = [job for job, (_, comment) in jobs.items() if comment.startswith("rule_train_")]
    assert len(training) == 2
    for job in training:  # the GPU request of the training jobs reached SLURM
        shown = subprocess.run(["scontrol", "show", "job", job], env=os.environ | cluster, capture_output=True,
                               text=True, check=True).stdout
        assert "gres:gpu:1" in shown, shown
    # The same pipeline run locally gives the same cohort and the same predictions.
    snakemake(local, _config(local), TARGET)
    for path in ("results/tiny/cohort.parquet", "results/tiny/models/mortality/gru/seed0/predictions.parquet",
                 "results/tiny/models/mortality/gru/seed1/predictions.parquet"):
        assert pl.read_parquet(on_slurm / path).equals(pl.read_parquet(local / path)), path
    assert (on_slurm / TARGET).read_text() == (local / TARGET).read_text()


def test_a_failing_job_is_reported_with_its_log(tmp_path, cluster):
    config = _config(tmp_path)
    config["datasets"]["tiny"] = {"kind": "mimic4", "root": str(tmp_path / "nowhere")}
    (tmp_path / "nowhere" / "hosp").mkdir(parents=True)
    (tmp_path / "nowhere" / "hosp" / "patients.csv").write_text("subject_id\n1\n")
    result = snakemake(tmp_path, config, "--workflow-profile", str(REPO / "profiles" / "slurm"), *TEST_OVERRIDES,
                       "--retries", "0", "results/tiny/parquet/patients.parquet", check=False, env=cluster,
                       timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "SLURM status is: 'FAILED'" in log, log[-3000:]
    assert "patients.csv" in log and "gender" in log  # the job's error, which names file and column, comes back
