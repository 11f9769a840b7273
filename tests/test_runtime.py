"""Process set-up of a pipeline job."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_every_job_logs_its_exact_peak_memory_and_cpu_time(tmp_path):
    """The last line of a job's log: what bench/scale.py tabulates and a cluster job must request."""
    log = tmp_path / "job.log"
    script = (f"import sys; sys.path.insert(0, {str(REPO / 'src')!r})\n"
              f"from emerge_ehr.runtime import start_job\nstart_job(1, {str(log)!r})\n"
              "block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096])\n"
              "sum(range(10**7))\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    wall, cpu, peak = map(float, re.search(r"job resources: wall ([\d.]+) s, CPU ([\d.]+) s, peak memory (\d+) MB",
                                           log.read_text()).groups())
    assert peak >= 300 and 0 < cpu and 0 < wall
