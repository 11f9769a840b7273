"""The shared cache: no file written by two jobs, nothing computed twice, a killed job resumes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

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


def job(directory, writer: str, keys: list[str], hold: str = "pass") -> subprocess.Popen:
    script = JOB.format(src=str(REPO / "src"), directory=str(directory), writer=writer, keys=keys, hold=hold)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


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


def test_a_killed_job_keeps_its_committed_values_and_its_rerun_resumes_them(tmp_path):
    directory = tmp_path / "cache"
    killed = job(directory, "shard0.json", ["a", "b", "c"], hold="__import__('os')._exit(9) if key == 'b' else None")
    killed.communicate(timeout=60)
    assert killed.returncode == 9
    assert [p.name for p in directory.iterdir()] == [f"{writer_name('shard0.json')}{OPEN_SUFFIX}"]
    # another job does not read a segment still being written
    other = SegmentedCache(directory, "answers", "answer", "TEXT", "elsewhere.json")
    assert other.get_many(["a", "b"]) == {}
    other.close()
    rerun = finish(job(directory, "shard0.json", ["a", "b", "c"]))
    assert rerun["found"] == {"a": "shard0.json:a", "b": "shard0.json:b"}  # both committed before the kill
    (segment,) = directory.iterdir()
    with sqlite3.connect(segment) as sealed:
        assert sealed.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3


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

