"""Process set-up for a pipeline job; imports nothing heavy, so it runs before polars and torch load."""

from __future__ import annotations

import atexit
import ctypes.util
import logging
import os
import resource
import sys
import time
from pathlib import Path

PRELOADED = "EMERGE_PRELOADED_ALLOCATOR"


def start_job(threads: int, log_file: str | Path | None, fast_allocator: bool = False) -> None:
    """Limit native thread pools to the job's threads and send log lines to the rule's log file.

    ``fast_allocator`` (the LLM and text-encoder jobs) first restarts the process once with a faster malloc
    preloaded: faster decoding, and for the encoder a bounded heap (glibc's grows with every new batch shape:
    1.9 GB against 1.1 GB after 30 batches of 128 note chunks, docs/PERFORMANCE.md).
    Logs carry ids, counts and timings only, never note text or other clinical values.
    """
    if fast_allocator:
        preload_allocator()
    for variable in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(max(1, threads)))
    # vLLM would otherwise replace the logging set-up (closing the log file) when it is imported.
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(log_file).write_text("")
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    for noisy in ("vllm", "transformers", "sentence_transformers", "faiss", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.excepthook = _log_failure
    atexit.register(_log_resources, time.time())
    if os.environ.get(PRELOADED):
        logging.getLogger("emerge_ehr").info("malloc: %s preloaded", os.environ[PRELOADED])


def allocator_library() -> str | None:
    """The system's tcmalloc (e.g. Debian's libtcmalloc-minimal4), else mimalloc from the cmeel-mimalloc package."""
    for name in ("tcmalloc_minimal", "tcmalloc"):
        if found := ctypes.util.find_library(name):
            return found
    from importlib.metadata import PackageNotFoundError, files

    try:
        shipped = [f for f in files("cmeel-mimalloc") or [] if f.name.startswith("libmimalloc.so.")]
    except PackageNotFoundError:
        return None
    return str(shipped[0].locate()) if shipped else None


def preload_allocator() -> None:
    """Restart this process once with a faster allocator in LD_PRELOAD (a running process cannot preload).

    vLLM's CPU backend asks for tcmalloc: on 2 cores it decodes 12 % faster with it and 7 % with mimalloc
    (docs/PERFORMANCE.md). Linux only; nothing happens where no such library is found.
    """
    if not sys.platform.startswith("linux") or os.environ.get(PRELOADED):
        return
    library = allocator_library()
    if library is None:
        return
    preload = ":".join(filter(None, [library, os.environ.get("LD_PRELOAD")]))
    sys.stdout.flush()
    sys.stderr.flush()
    environment = os.environ | {"LD_PRELOAD": preload, PRELOADED: library}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


def _own_peak_kb() -> int:
    """This process's peak resident memory in kB: the kernel's high-water mark of its own address space (VmHWM),
    which starts afresh when the job's program starts. ``ru_maxrss`` does not: it keeps the peak of the process
    it was forked from (a 1.2 GB test runner, or Snakemake), whatever the job itself used."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def job_resources(started: float) -> dict[str, float]:
    """Wall and CPU seconds and the peak resident memory (the kernel's high-water mark, not a sample) of this
    job's process and the child processes it waited for: what a cluster job must request."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(time.time() - started, 2),
            "cpu_s": round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 2),
            "peak_rss_mb": round(max(_own_peak_kb(), children.ru_maxrss) / 1024, 1)}


def _log_resources(started: float) -> None:
    """The job's last log line, read by bench/scale.py and by anyone sizing cluster jobs."""
    usage = job_resources(started)
    logging.getLogger("emerge_ehr").info("job resources: wall %.1f s, CPU %.1f s, peak memory %.0f MB",
                                         usage["wall_s"], usage["cpu_s"], usage["peak_rss_mb"])


def _log_failure(kind, error, traceback) -> None:
    """Put the reason a job failed into its log file too, where `--show-failed-logs` shows it."""
    logging.getLogger("emerge_ehr").critical("job failed: %s: %s", kind.__name__, error)
    sys.__excepthook__(kind, error, traceback)
