"""Process set-up of a pipeline job."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_every_job_logs_its_exact_peak_memory_and_cpu_time(tmp_path):
    """The last line of a job's log: what bench/scale.py tabulates and a cluster job must request."""
    log = tmp_path / "job.log"
    child = "import time; t = time.process_time()\nwhile time.process_time() - t < 1: pass"
    script = (f"import subprocess, sys, time; sys.path.insert(0, {str(REPO / 'src')!r})\n"
              f"from emerge_ehr.runtime import start_job\nstart_job(1, {str(log)!r})\n"
              "block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096])\n"
              "del block\n"  # gone before the job ends: only a high-water mark still sees its 300 MB
              f"subprocess.run([sys.executable, '-c', {child!r}])\n"  # a second of CPU, in a child process
              "time.sleep(1)\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    last = log.read_text().splitlines()[-1]
    wall, cpu, peak = map(float, re.search(r"job resources: wall ([\d.]+) s, CPU ([\d.]+) s, peak memory (\d+) MB",
                                           last).groups())
    assert 300 <= peak < 400  # megabytes, the peak, not what is left at the end
    assert 1.0 <= cpu <= wall - 0.8  # the child's CPU counted; the second asleep not
