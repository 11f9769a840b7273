"""A key -> value cache that jobs on different hosts share through a network file system without locks.

SQLite's own locking fails over NFS, Lustre and GPFS ("WAL does not work over a network filesystem"), so no file
here is ever written by two jobs. Each job writes only its own segment, ``{writer}.open.sqlite``, opened without
locking (no other process touches it) and committed after every put, so a killed job loses nothing it finished
and its rerun (the same writer) picks the file up again. Closing the job seals the segment: an atomic rename to
``{writer}.{time_ns}.sqlite``, after which nobody writes it again. Every job reads the sealed segments of all
jobs, read-only and immutable, and never another job's open one. Keys are content hashes, so a value read from
any segment is the one this job would have computed. The writer is a job's unique output path, which Snakemake
lets only one job at a time produce.

Layout of one cache (``directory``): ``*.sqlite`` sealed segments, ``*.open.sqlite`` segments being written;
delete the directory to start afresh.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("emerge_ehr")

OPEN_SUFFIX = ".open.sqlite"
_MAX_PARAMETERS = 900  # SQLite's limit on bound parameters, with margin


def writer_name(job: str) -> str:
    """A file-name-safe, unique name for the job whose output is ``job``.

    >>> writer_name("results/demo/summaries/shard0.json")
    'results-demo-summaries-shard0.json-341587bb'
    """
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", job).strip("-")[-80:]
    return f"{slug}-{hashlib.sha256(job.encode()).hexdigest()[:8]}"


def _read_only(path: Path) -> sqlite3.Connection:
    """A sealed segment: immutable, so SQLite takes no lock and keeps no journal (safe on any file system).

    A single-file cache of earlier versions (WAL mode) is read as a segment too; where its write-ahead log
    survived a killed job, it is opened read-only instead, so that the log's answers are read as well.
    """
    mode = "mode=ro" if path.with_name(path.name + "-wal").exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)


class SegmentedCache:
    """Values of one table (``key TEXT PRIMARY KEY``, ``value_column``) across per-job SQLite segments."""

    def __init__(self, directory: str | Path, table: str, value_column: str, value_type: str, writer: str) -> None:
        """``directory``'s sibling ``{directory}.sqlite``, the single-file cache of earlier versions, is read too."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.table, self.value_column = table, value_column
        self.writer = writer_name(writer)
        self.open_path = self.directory / f"{self.writer}{OPEN_SUFFIX}"
        # Sealed segments of every job, listed once: segments sealed later belong to jobs doing other work.
        self.sealed = sorted(p for p in self.directory.glob("*.sqlite") if not p.name.endswith(OPEN_SUFFIX))
        legacy = self.directory.with_name(self.directory.name + ".sqlite")
        self.sealed += [legacy] if legacy.exists() else []
        # Only this job writes here, so no lock is needed (nor possible on a network file system); the rollback
        # journal keeps each commit atomic when the job is killed.
        self.connection = sqlite3.connect(f"{self.open_path.resolve().as_uri()}?nolock=1", uri=True)
        self.connection.execute("PRAGMA journal_mode=DELETE")
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, {value_column} {value_type} NOT NULL)"
        )
        self.connection.commit()

    def get_many(self, keys: list[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        remaining = list(dict.fromkeys(keys))
        sources = [self.connection] + [_read_only(p) for p in self.sealed]
        try:
            for source in sources:
                for start in range(0, len(remaining), _MAX_PARAMETERS):
                    chunk = remaining[start : start + _MAX_PARAMETERS]
                    found.update(source.execute(
                        f"SELECT key, {self.value_column} FROM {self.table} WHERE key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    ))
                remaining = [k for k in remaining if k not in found]
                if not remaining:
                    break
        finally:
            for source in sources[1:]:
                source.close()
        return found

    def put_many(self, items: list[tuple[str, object]]) -> None:
        """Committed at once: a job killed after this call keeps these values."""
        self.connection.executemany(
            f"INSERT OR REPLACE INTO {self.table} (key, {self.value_column}) VALUES (?, ?)", items
        )
        self.connection.commit()

    def close(self) -> None:
        """Seal this job's segment (or drop it, if the job added nothing) for every later job to read."""
        written = self.connection.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
        self.connection.close()
        if written:
            sealed = self.directory / f"{self.writer}.{time.time_ns()}.sqlite"
            self.open_path.replace(sealed)
            log.info("cache %s: sealed %d new entries", self.directory.name, written)
        else:
            self.open_path.unlink()
