"""Process set-up for a pipeline job; imports nothing heavy, so it runs before polars and torch load."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def start_job(threads: int, log_file: str | Path | None) -> None:
    """Limit native thread pools to the job's threads and send log lines to the rule's log file.

    Logs carry ids, counts and timings only, never note text or other clinical values.
    """
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


def _log_failure(kind, error, traceback) -> None:
    """Put the reason a job failed into its log file too, where `--show-failed-logs` shows it."""
    logging.getLogger("emerge_ehr").critical("job failed: %s: %s", kind.__name__, error)
    sys.__excepthook__(kind, error, traceback)
