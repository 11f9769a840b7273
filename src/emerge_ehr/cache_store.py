"""A key -> value cache that jobs on different hosts share through a network file system without locks.

SQLite's own locking fails over NFS, Lustre and GPFS ("WAL does not work over a network filesystem"), so no file
here is ever written by two processes. Each process writes only its own segment,
``{writer}.{host}.{pid}.{start}.open.sqlite``, created exclusively (so that no two processes can ever share one:
not a SLURM requeue while the first instance still runs, nor two working directories whose jobs have the same
writer name), opened without locking, and committed after every put, so that a killed job loses nothing it
finished. Closing seals the segment: an atomic rename to ``{writer}.{host}.{pid}.{start}.{time_ns}.sqlite``,
after which nobody writes it again. Every process reads the sealed segments of all, read-only and immutable, and
never another process's open one. Keys are content hashes, so a value read from any segment is the one this
process would have computed.

An open segment whose process is gone (killed, node lost) is sealed as it stands by the next process that opens
the cache, never deleted while it holds values: it first claims the file by an atomic rename (only one claimant
wins), lets SQLite roll back a commit cut short, checks the file's integrity, and renames it sealed. A process
is gone when it runs on this host and its process id is no longer alive (or belongs to a newer process); for
another host, when its segment has not been touched for ``STALE_SECONDS``: a live process touches its segment
every ``HEARTBEAT_SECONDS``, and before each commit checks that nobody has claimed it (if a suspended process
was claimed all the same, it continues in a new segment).

Layout of one cache (``directory``): ``*.sqlite`` sealed segments, ``*.open.sqlite`` segments being written,
``*.claimed-by-*`` segments being sealed by another process, ``*.damaged`` segments that failed the integrity
check (kept for inspection, not read); delete the directory to start afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("emerge_ehr")

OPEN_SUFFIX = ".open.sqlite"
HEARTBEAT_SECONDS = 60
STALE_SECONDS = 15 * 60  # an open segment of another host untouched this long: its process is gone
_MAX_PARAMETERS = 900  # SQLite's limit on bound parameters, with margin
CLAIMED = ".claimed-by-"
# The process of a segment: its writer's, {writer}.{host}.{pid}.{start}[-n].open.sqlite (earlier versions wrote
# {writer}.open.sqlite), or, while another process seals it, that claimant's: {segment}.claimed-by-{host}.{pid}.{start}
_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.(?P<start>\d+)(-\d+)?\.open\.sqlite$")
_CLAIMANT = re.compile(r"\.claimed-by-(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.(?P<start>\d+)$")


def writer_name(job: str) -> str:
    """A file-name-safe name for the job whose output is ``job``.

    >>> writer_name("results/demo/summaries/shard0.json")
    'results-demo-summaries-shard0.json-341587bb'
    """
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", job).strip("-")[-80:]
    return f"{slug}-{hashlib.sha256(job.encode()).hexdigest()[:8]}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()) or "host"


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, from /proc), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_tag() -> str:
    """``{host}.{pid}.{start}``: this process, unique on this host even when a process id is reused."""
    pid = os.getpid()
    return f"{_host()}.{pid}.{_process_start(pid) or time.time_ns()}"


def process_gone(name: str, modified: float, now: float, stale_seconds: float) -> bool:
    """Whether the process that writes the open segment ``name`` (touched at ``modified``) is gone.

    >>> process_gone(f"w.{_host()}.{os.getpid()}.{_process_start(os.getpid())}.open.sqlite", 0, 1e9, 60)
    False
    >>> process_gone("w.elsewhere.12.34.open.sqlite", modified=1000.0, now=1030.0, stale_seconds=60)
    False
    >>> process_gone("w.elsewhere.12.34.open.sqlite", modified=1000.0, now=1100.0, stale_seconds=60)
    True
    >>> process_gone(f"w.elsewhere.12.34.open.sqlite{CLAIMED}{_host()}.{2**22 + 1}.5", 0, 0, 60)  # no such pid
    True
    """
    owner = _CLAIMANT.search(name) if CLAIMED in name else _OWNER.search(name)
    if owner and owner["host"] == _host():
        pid = int(owner["pid"])
        start = _process_start(pid)
        if start is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False  # alive, and no /proc to compare its start with
        return str(start) != owner["start"]
    return now - modified > stale_seconds  # another host (or an earlier version's name): by its heartbeat


def _read_only(path: Path) -> sqlite3.Connection:
    """A sealed segment: immutable, so SQLite takes no lock and keeps no journal (safe on any file system).

    A single-file cache of earlier versions (WAL mode) is read as a segment too; where its write-ahead log
    survived a killed job, it is opened read-only instead, so that the log's answers are read as well.
    """
    mode = "mode=ro" if path.with_name(path.name + "-wal").exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)


def _unlocked(path: Path) -> sqlite3.Connection:
    """A segment only this process writes: no lock (none is possible on a network file system); the rollback
    journal keeps each commit atomic when the process is killed."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?nolock=1", uri=True)
    connection.execute("PRAGMA journal_mode=DELETE")
    return connection


def _sealed_name(segment: str) -> str:
    """The sealed name of an open (or claimed) segment: its owner's name and the time of sealing.

    >>> _sealed_name("w.h.1.2.open.sqlite.claimed-by-h.3.4").startswith("w.h.1.2.")
    True
    """
    stem = segment.split(OPEN_SUFFIX)[0]
    return f"{stem}.{time.time_ns()}.sqlite"


class SegmentedCache:
    """Values of one table (``key TEXT PRIMARY KEY``, ``value_column``) across per-process SQLite segments."""

    def __init__(self, directory: str | Path, table: str, value_column: str, value_type: str, writer: str,
                 stale_seconds: float = STALE_SECONDS, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        """``directory``'s sibling ``{directory}.sqlite``, the single-file cache of earlier versions, is read too."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.table, self.value_column, self.value_type = table, value_column, value_type
        self.writer = writer_name(writer)
        self.seal_orphans(stale_seconds)
        # Sealed segments of every process, listed once: segments sealed later belong to jobs doing other work.
        self.sealed = sorted(p for p in self.directory.glob("*.sqlite") if not p.name.endswith(OPEN_SUFFIX))
        legacy = self.directory.with_name(self.directory.name + ".sqlite")
        self.sealed += [legacy] if legacy.exists() else []
        self._open_segment()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, args=(heartbeat_seconds,), daemon=True)
        self._heartbeat.start()

    def _open_segment(self) -> None:
        """A new segment of this process's own, created exclusively: no other process can have it open."""
        tag = process_tag()
        for attempt in range(1000):
            name = f"{self.writer}.{tag}{f'-{attempt}' if attempt else ''}{OPEN_SUFFIX}"
            try:
                os.close(os.open(self.directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                break
            except FileExistsError:
                continue
        else:
            raise RuntimeError(f"{self.directory}: no free segment name for {self.writer}.{tag}")
        self.open_path = self.directory / name
        self._identity = self._file_identity()
        self.connection = _unlocked(self.open_path)
        self.connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY,"
                                f" {self.value_column} {self.value_type} NOT NULL)")
        self.connection.commit()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.open_path)
        except FileNotFoundError:
            return None
        return status.st_dev, status.st_ino

    def _beat(self, seconds: float) -> None:
        """Touch the open segment, so that processes on other hosts see this one is alive."""
        while not self._stop.wait(seconds):
            try:
                os.utime(self.open_path)
            except FileNotFoundError:
                pass  # claimed: the next put moves to a new segment

    def seal_orphans(self, stale_seconds: float) -> list[Path]:
        """Seal the open segments whose processes are gone (module docstring); returns the sealed files."""
        sealed, now = [], time.time()
        claimed = [p for p in self.directory.glob(f"*{CLAIMED}*") if _CLAIMANT.search(p.name)]
        for path in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")) + sorted(claimed):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if process_gone(path.name, modified, now, stale_seconds) and (done := self._seal_orphan(path)):
                sealed.append(done)
        return sealed

    def _seal_orphan(self, path: Path) -> Path | None:
        """Claim an orphaned segment (an open one, or one whose claimant is gone too), recover it and seal it."""
        claimed = path.with_name(f"{path.name.split(CLAIMED)[0]}{CLAIMED}{process_tag()}")
        try:
            os.rename(path, claimed)  # atomic: of several processes, only one claims the segment
        except FileNotFoundError:
            return None
        journal = path.with_name(path.name + "-journal")
        if journal.exists():  # a commit cut short: SQLite rolls it back from the journal beside the file
            os.rename(journal, claimed.with_name(claimed.name + "-journal"))
        try:
            connection = _unlocked(claimed)
            try:
                check = connection.execute("PRAGMA integrity_check").fetchone()[0]
                values = connection.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
            finally:
                connection.close()
        except sqlite3.DatabaseError as err:
            check, values = str(err), None
        if check != "ok":
            damaged = claimed.with_name(claimed.name + ".damaged")
            os.rename(claimed, damaged)
            log.warning("cache %s: a segment of a process that is gone failed its integrity check (%s); kept aside"
                        " as %s, not read", self.directory.name, check, damaged.name)
            return None
        if not values:
            claimed.unlink()  # empty: nothing to keep
            return None
        sealed = self.directory / _sealed_name(path.name)
        os.rename(claimed, sealed)
        log.info("cache %s: sealed %d entries of a process that is gone", self.directory.name, values)
        return sealed

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
        """Committed at once: a process killed after this call keeps these values."""
        if self._file_identity() != self._identity:
            # claimed by another process, which took this one for gone (suspended past the heartbeat's limit):
            # what was committed is sealed there; continue in a new segment
            log.warning("cache %s: this process's segment was sealed by another; continuing in a new one",
                        self.directory.name)
            self.connection.close()
            self._open_segment()
        self.connection.executemany(
            f"INSERT OR REPLACE INTO {self.table} (key, {self.value_column}) VALUES (?, ?)", items
        )
        self.connection.commit()

    def close(self) -> None:
        """Seal this process's segment (or drop it, if it holds nothing) for every later process to read."""
        self._stop.set()
        self._heartbeat.join()
        written = self.connection.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
        self.connection.close()
        if self._file_identity() != self._identity:
            return  # claimed and sealed by another process
        if written:
            self.open_path.replace(self.directory / _sealed_name(self.open_path.name))
            log.info("cache %s: sealed %d new entries", self.directory.name, written)
        else:
            self.open_path.unlink()
