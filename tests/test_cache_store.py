"""The shared cache: no file written by two jobs, nothing computed twice, a killed job resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from emerge_ehr.cache_store import OPEN_SUFFIX, SegmentedCache, writer_name

# One shard job: records, with Python's audit hooks, every file it opens for writing (plain files and SQLite
# databases not opened immutable or read-only), reads what it can from the cache, writes its own values.
JOB = """
import json, sys
sys.path.insert(0, {src!r})
written = set()

def audit(event, args):
    if event == "open" and isinstance(args[0], str) and (args[2] or 0) & 0o3:  # O_WRONLY or O_RDWR
        written.add(args[0])
    elif event == "sqlite3.connect" and "mode=ro" not in str(args[0]):
        written.add(str(args[0]))

sys.addaudithook(audit)
from emerge_ehr.cache_store import SegmentedCache
cache = SegmentedCache({directory!r}, "answers", "answer", "TEXT", {writer!r})
found = cache.get_many({keys!r})
for key in {keys!r}:
    if key not in found:
        cache.put_many([(key, {writer!r} + ":" + key)])
        {hold}
cache.close()
print(json.dumps({{"found": found, "written": sorted(written)}}))
"""


def job(directory, writer: str, keys: list[str], hold: str = "pass", cwd=None) -> subprocess.Popen:
    script = JOB.format(src=str(REPO / "src"), directory=str(directory), writer=writer, keys=keys, hold=hold)
    if cwd is not None:
        Path(cwd).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=cwd)


def finish(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    return json.loads(out)


def test_concurrent_shard_jobs_write_only_their_own_files_and_read_each_others_sealed_ones(tmp_path):
    directory = tmp_path / "cache"
    # two shard jobs at once, as on two cluster nodes sharing one network file system
    first = job(directory, "shard0.json", ["a", "b"], hold="__import__('time').sleep(0.3)")
    second = job(directory, "shard1.json", ["c", "d"], hold="__import__('time').sleep(0.3)")
    runs = [finish(first), finish(second)]
    for run, writer in zip(runs, ("shard0.json", "shard1.json")):
        own = [path for path in run["written"] if str(directory) in path]
        assert own and all(writer_name(writer) in path for path in own), own
    # a later job (another shard count) computes nothing the two sealed, only what is new
    third = finish(job(directory, "shard0-of-3.json", ["a", "b", "c", "d", "e"]))
    assert third["found"] == {k: f"shard{i // 2}.json:{k}" for i, k in enumerate("abcd")}
    assert not any(writer_name("shard0.json") in p or writer_name("shard1.json") in p for p in third["written"])
    assert sorted(p.name.endswith(OPEN_SUFFIX) for p in directory.iterdir()) == [False] * 3


def segments(directory) -> dict[str, list]:
    """The cache's files by state, each sealed one checked: integrity ok, and its values."""
    files = {"open": [], "sealed": [], "other": []}
    for path in sorted(directory.iterdir()):
        state = "open" if path.name.endswith(OPEN_SUFFIX) else "sealed" if path.suffix == ".sqlite" else "other"
        files[state].append(path)
    for path in files["sealed"]:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as sealed:
            assert sealed.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
    return files


def values(directory) -> dict[str, str]:
    found = {}
    for path in segments(directory)["sealed"]:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as sealed:
            found |= dict(sealed.execute("SELECT key, answer FROM answers"))
    return found


def wait_for(path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_two_live_processes_with_one_writer_name_each_write_and_seal_their_own_segment(tmp_path):
    """As a --nolock run, or two working directories whose cache_dir is one folder: same writer, at once."""
    directory = tmp_path / "cache"
    hold = "__import__('time').sleep(0.2)"
    first = job(directory, "results/demo/summaries/shard0.json", ["a", "b", "c"], hold=hold, cwd=tmp_path / "one")
    second = job(directory, "results/demo/summaries/shard0.json", ["d", "e", "f"], hold=hold, cwd=tmp_path / "two")
    for run in (finish(first), finish(second)):
        own = [path for path in run["written"] if str(directory) in path]
        assert len({Path(path.split("?")[0]).name for path in own}) == 1, own  # one segment each, its alone
    files = segments(directory)
    assert len(files["sealed"]) == 2 and not files["open"] and not files["other"]
    assert values(directory) == {k: f"results/demo/summaries/shard0.json:{k}" for k in "abcdef"}


def test_a_requeued_job_beside_its_first_instance_still_running(tmp_path):
    """SLURM requeues a job whose first instance still runs: both write, neither reads the other's open
    segment, both seal, nothing is lost."""
    directory, release = tmp_path / "cache", tmp_path / "release"
    wait = f"[__import__('time').sleep(0.05) for _ in iter(lambda: __import__('os').path.exists({str(release)!r}), True)]"
    first = job(directory, "shard0.json", ["a", "b"],  # writes a, then waits to be released before b
                hold=f"(open({str(tmp_path / 'wrote')!r}, 'w').close(), {wait}) if key == 'a' else None")
    wait_for(tmp_path / "wrote")
    requeued = finish(job(directory, "shard0.json", ["a", "b", "c"]))
    assert requeued["found"] == {}  # the first instance is alive: its open segment is not read
    release.touch()
    finish(first)
    files = segments(directory)
    assert len(files["sealed"]) == 2 and not files["open"] and not files["other"]
    assert set(values(directory)) == {"a", "b", "c"}


def test_a_process_killed_in_the_middle_of_a_write_loses_only_that_write_and_its_rerun_seals_the_rest(tmp_path):
    directory = tmp_path / "cache"
    big = "[(f'big{i}', 'x' * 200) for i in range(400_000)]"
    killed = job(directory, "shard0.json", ["a", "b", "c"],
                 hold=f"(open({str(tmp_path / 'writing')!r}, 'w').close(), cache.put_many({big})) if key == 'b' else None")
    wait_for(tmp_path / "writing")
    time.sleep(0.3)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    files = segments(directory)
    assert len(files["open"]) == 1 and not files["sealed"]
    assert [p.name.endswith("-journal") for p in files["other"]] == [True]  # killed inside a commit
    # the rerun finds the killed process gone: it seals the segment as it stands, the cut-short write rolled back
    rerun = finish(job(directory, "shard0.json", ["a", "b", "c"]))
    assert rerun["found"] == {"a": "shard0.json:a", "b": "shard0.json:b"}  # both committed before the kill
    files = segments(directory)
    assert len(files["sealed"]) == 2 and not files["open"] and not files["other"]
    assert set(values(directory)) == {"a", "b", "c"}  # no row of the write the kill cut short


def test_an_open_segment_of_another_host_is_sealed_only_once_its_heartbeat_has_stopped(tmp_path):
    from emerge_ehr.cache_store import SegmentedCache

    directory = tmp_path / "cache"
    directory.mkdir()
    orphan = directory / f"{writer_name('shard0.json')}.node17.4242.99{OPEN_SUFFIX}"
    with sqlite3.connect(orphan) as segment:
        segment.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        segment.execute("INSERT INTO answers VALUES ('k', 'from node17')")
    reader = SegmentedCache(directory, "answers", "answer", "TEXT", "reader.json", stale_seconds=60)
    assert reader.get_many(["k"]) == {} and orphan.exists()  # touched just now: maybe alive
    reader.close()
    old = time.time() - 120
    os.utime(orphan, (old, old))
    reader = SegmentedCache(directory, "answers", "answer", "TEXT", "reader.json", stale_seconds=60)
    assert reader.get_many(["k"]) == {"k": "from node17"} and not orphan.exists()
    reader.close()


def test_the_single_file_cache_of_earlier_versions_is_still_read(tmp_path):
    with sqlite3.connect(tmp_path / "llm-answers.sqlite") as legacy:
        legacy.execute("PRAGMA journal_mode=WAL")
        legacy.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, tokens INTEGER,"
                       " created REAL NOT NULL)")
        legacy.execute("INSERT INTO answers VALUES ('k', 'old answer', 3, 0)")
    cache = SegmentedCache(tmp_path / "llm-answers", "answers", "answer", "TEXT", "job.json")
    assert cache.get_many(["k", "new"]) == {"k": "old answer"}
    cache.close()


@pytest.mark.parametrize("job_output", ["results/x/summaries/shard0.json", "results/x/external/y/summaries/shard0.json"])
def test_writer_names_differ_for_every_job_output(job_output):
    assert writer_name(job_output) != writer_name(job_output.replace("shard0", "shard1"))

