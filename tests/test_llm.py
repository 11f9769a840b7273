"""LLM stages: answer parsing and retries, the cache and resume, chunking, refinement, the remote-host
refusal, and the real engines (vLLM in-process and `vllm serve` on loopback; marked slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import polars as pl
import pytest

from emerge_ehr.llm.backends import Answer, LLMSettings, OpenAIBackend, Request, is_loopback, make_backend
from emerge_ehr.llm.cache import AnswerCache
from emerge_ehr.llm.extract import (
    ENTITY_ANSWER_SCHEMA, ExtractionSettings, condition_of, extraction_requests, refine,
    words_per_chunk,
)
from emerge_ehr.llm.runner import parse_answer, run
from emerge_ehr.llm.summarize import NOTHING_FOUND, SummarySettings, summaries_table, summary_requests
from emerge_ehr.text.lexicon import load_abbreviations

from conftest import DEFAULTS, REPO

ABBREVIATIONS = load_abbreviations(REPO / "config" / "abbreviations.yaml")


class ScriptedBackend:
    """Plays back fixed answers in order, to exercise the runner's handling of bad answers."""

    identity = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def generate(self, requests: list[Request], progress=None) -> list[Answer]:
        self.calls += len(requests)
        return [Answer(self.answers.pop(0), 5) for _ in requests]


def request(text: str = "note") -> Request:
    return Request([{"role": "user", "content": text}], ENTITY_ANSWER_SCHEMA, 32)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty answer"),
        ('{"entities": ["pneumonia", "sep', "not JSON"),
        ('{"entities": "pneumonia"}', "schema violation at entities"),
        ('{"entities": [' + ", ".join(['"x1"'] * 13) + "]}", "schema violation at entities"),
    ],
)
def test_malformed_answers_are_named(text, reason):
    value, error = parse_answer(text, ENTITY_ANSWER_SCHEMA)
    assert value is None and error.startswith(reason)


def test_text_around_the_json_is_tolerated():
    value, error = parse_answer('Sure! {"entities": ["CHF"]} Hope this helps.', ENTITY_ANSWER_SCHEMA)
    assert error is None and value == {"entities": ["CHF"]}


def test_bad_answers_are_retried_then_recorded_not_raised(tmp_path):
    backend = ScriptedBackend(['{"entities": ["CHF"]}', "oops", "", '{"entities": [', "nope"])
    settings = LLMSettings.from_config(DEFAULTS, max_attempts=3)
    cache = AnswerCache(tmp_path / "answers", writer="test")
    results, stats = run([request("a"), request("b")], backend, cache, settings, "test")
    assert results[0].value == {"entities": ["CHF"]} and results[0].attempts == 1
    assert results[1].value is None and results[1].attempts == 3 and results[1].error.startswith("not JSON")
    assert (stats.calls, stats.failures, stats.retries) == (4, 1, 2)


def test_cache_answers_reruns_without_calls_and_new_prompts_only(tmp_path):
    settings = LLMSettings.from_config(DEFAULTS, batch_size=1)  # a batch per prompt
    cache = AnswerCache(tmp_path / "answers", writer="test")
    first = ScriptedBackend(['{"entities": ["CHF"]}', '{"entities": []}'])
    run([request("a"), request("b")], first, cache, settings, "test")
    again = ScriptedBackend(['{"entities": ["AKI"]}'])
    results, stats = run([request("a"), request("b"), request("c")], again, cache, settings, "test")
    assert again.calls == 1 and stats.cache_hits == 2
    assert [r.value["entities"] for r in results] == [["CHF"], [], ["AKI"]]
    raw = b"".join(p.read_bytes() for p in (tmp_path / "answers").iterdir())
    assert raw and b'"a"' not in raw  # prompts are hashed into keys, not stored


class RecordingBackend:
    """Answers every prompt with its own text, and records the prompts of each engine call."""

    identity = "recording"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def generate(self, requests: list[Request], progress=None) -> list[Answer]:
        self.batches.append([r.messages[0]["content"] for r in requests])
        return [Answer(json.dumps({"entities": [r.messages[0]["content"]]}), 3) for r in requests]


def test_engine_batches_do_not_depend_on_what_the_cache_holds(tmp_path):
    """A job resumed after a kill, or run beside answers other jobs cached, sends the engine the batches of an
    uninterrupted run from an empty cache (only those it still needs), each whole; a new prompt joins one batch."""
    settings = LLMSettings.from_config(DEFAULTS, batch_size=4)
    prompts = [request(f"note {i}") for i in range(40)]
    fresh = RecordingBackend()
    with AnswerCache(tmp_path / "fresh", writer="a") as cache:
        run(prompts, fresh, cache, settings, "test")
    assert len(fresh.batches) > 3 and sorted(sum(fresh.batches, [])) == sorted(f"note {i}" for i in range(40))
    partial = AnswerCache(tmp_path / "partial", writer="b")
    run(prompts[::3], RecordingBackend(), partial, settings, "test")  # some answers cached, in other batches
    resumed = RecordingBackend()
    results, _ = run(prompts, resumed, partial, settings, "test")
    assert resumed.batches and all(batch in fresh.batches for batch in resumed.batches)
    assert [r.value for r in results] == [{"entities": [f"note {i}"]} for i in range(40)]
    grown = RecordingBackend()
    run(prompts[:20] + [request("a new stay")] + prompts[20:], grown, AnswerCache(tmp_path / "fresh", writer="c"),
        settings, "test")
    (changed,) = grown.batches  # the new prompt's batch, and nothing else
    assert "a new stay" in changed and len(changed) > 1


def fake_hardware(monkeypatch, cuda: bool, cuda_bf16: bool = False, avx512_bf16: bool = False, amx: bool = False):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


@pytest.mark.parametrize("hardware, expected", [
    ({"cuda": False}, "float32"),  # an AVX2-only CPU: emulated bfloat16 is several times slower
    ({"cuda": False, "avx512_bf16": True}, "bfloat16"),
    ({"cuda": False, "amx": True}, "bfloat16"),
    ({"cuda": True, "cuda_bf16": True}, "bfloat16"),
    ({"cuda": True, "cuda_bf16": False}, "float16"),  # e.g. a V100 or T4
])
def test_llm_dtype_auto_follows_the_hardware(monkeypatch, tmp_path, caplog, hardware, expected):
    fake_hardware(monkeypatch, **hardware)
    caplog.set_level("INFO")
    backend = make_backend(LLMSettings.from_config(DEFAULTS, model=str(tmp_path)))
    assert backend.dtype == expected and f":{expected}" in backend.identity
    assert f"in {expected}: " in caplog.text  # the choice and its reason are logged
    forced = make_backend(LLMSettings.from_config(DEFAULTS, model=str(tmp_path), dtype="bfloat16"))
    assert forced.dtype == "bfloat16"


def test_llm_dtype_is_validated():
    with pytest.raises(ValueError, match="llm.dtype"):
        LLMSettings.from_config(DEFAULTS, dtype="int4")


def test_a_new_number_format_or_engine_version_asks_the_model_again(monkeypatch, tmp_path):
    """The answer cache is keyed by engine, version, model and format: no stale answer for another setting."""
    from emerge_ehr.llm import backends
    from emerge_ehr.llm.stages import llm_entities

    fake_hardware(monkeypatch, cuda=False)
    calls = []

    def answer(self, requests, progress=None):
        calls.append(len(requests))
        return [Answer('{"entities": ["pneumonia"]}', 5) for _ in requests]

    monkeypatch.setattr(backends.VLLMBackend, "generate", answer)
    monkeypatch.setattr(backends.VLLMBackend, "start_once", lambda self: None)
    monkeypatch.setattr(backends, "prompt_length", lambda settings: None)  # the fake model has no tokenizer
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    notes = tmp_path / "notes.parquet"
    pl.DataFrame({"stay_id": [1, 2], "note_id": ["a", "b"], "text": ["Pneumonia.", "Pneumonia again."]}).write_parquet(notes)

    def stage(**llm) -> int:
        before = len(calls)
        llm_entities(str(notes), str(REPO / "config" / "abbreviations.yaml"), 0, 1,
                     asdict(LLMSettings.from_config(DEFAULTS, model=str(model), **llm)),
                     asdict(ExtractionSettings.from_config(DEFAULTS)), str(tmp_path / "cache"),
                     str(tmp_path / "entities.parquet"), str(tmp_path / "stats.json"))
        return sum(calls[before:])

    assert stage(dtype="float32") == 2
    assert stage(dtype="float32") == 0  # cached
    assert stage(dtype="auto") == 0  # auto is float32 on this (faked) CPU: the same engine setting
    assert stage(dtype="bfloat16") == 2  # another format decodes differently
    monkeypatch.setattr(backends, "engine_version", lambda package: f"{package}==99.0")
    assert stage(dtype="float32") == 2  # so may another engine release


def test_progress_is_logged_with_rate_and_time_left(caplog):
    from emerge_ehr.progress import Progress

    now = [0.0]
    caplog.set_level("INFO")
    progress = Progress("entities", 100, "prompts", interval=30, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 5
        progress.advance(5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["entities: 30 of 100 prompts (1.00/s, about 1 min 10 s left, 30 s so far)"]
    now[0] += 60
    progress.advance(50)
    assert caplog.records[-1].getMessage() == "entities: 100 of 100 prompts (0.91/s, 1 min 50 s so far)"
    early = Progress("summaries", 1000, "prompts", interval=30, clock=lambda: now[0])
    now[0] += 40
    early.advance(1)  # too few done for an estimate of the time left
    assert caplog.records[-1].getMessage() == "summaries: 1 of 1000 prompts (0.03/s, 40 s so far)"


def test_vllm_progress_bar_counts_finished_prompts_only():
    from emerge_ehr.llm.backends import engine_progress_bar
    from emerge_ehr.progress import Progress

    progress = Progress("test", 5, "prompts")
    bar = engine_progress_bar(progress)
    adding = bar(range(5), desc="Adding requests")
    assert list(adding) == list(range(5)) and progress.done == 0  # vLLM's bar over the requests it queues
    processed = bar(total=5, desc="Processed prompts")
    processed.update(2)
    processed.update(3)
    processed.close()
    assert progress.done == 5


@pytest.mark.parametrize("compile_model", [False, True])
def test_engine_options_per_device(tmp_path, compile_model):
    from emerge_ehr.llm.backends import CPU_KV_BLOCK, engine_options

    settings = LLMSettings.from_config(DEFAULTS, workdir=str(tmp_path), compile=compile_model, kv_cache_gb=3)
    cpu, env = engine_options(settings, "cpu")
    assert cpu == {"enforce_eager": not compile_model, "block_size": CPU_KV_BLOCK}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))
    assert "VLLM_BATCH_INVARIANT" not in env  # a CPU engine has no batch-invariant kernels: fixed batches instead
    gpu, env = engine_options(settings, "cuda")
    assert gpu == {"gpu_memory_utilization": settings.gpu_memory_utilization} and "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["VLLM_BATCH_INVARIANT"] == "1"
    _, env = engine_options(LLMSettings.from_config(DEFAULTS, batch_invariant=False), "cuda")
    assert "VLLM_BATCH_INVARIANT" not in env


def test_the_runner_reports_progress_of_backends_that_do_not(tmp_path, caplog):
    caplog.set_level("INFO")
    backend = ScriptedBackend(['{"entities": []}'] * 3)
    run([request("a"), request("b"), request("c")], backend, AnswerCache(tmp_path / "a", writer="test"), LLMSettings.from_config(DEFAULTS), "test")
    assert "test, attempt 1: 3 of 3 prompts to answer" in caplog.text


def test_remote_hosts_are_refused_unless_allowed():
    with pytest.raises(ValueError, match="not a loopback address"):
        OpenAIBackend(LLMSettings.from_config(DEFAULTS, backend="openai", base_url="http://192.0.2.10:8000/v1"))
    allowed = OpenAIBackend(LLMSettings.from_config(DEFAULTS, backend="openai", base_url="http://192.0.2.10:8000/v1",
                                                    allow_remote=True))
    assert allowed.identity == "openai:resources/models/smollm2-135m-instruct@192.0.2.10:8000"
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost:9/v1")
    assert not is_loopback("http://example.invalid/v1")


def test_long_notes_are_chunked_within_the_context():
    settings = ExtractionSettings.from_config(DEFAULTS, chunk_words=2000, max_chunks=4)
    size = words_per_chunk(settings, max_model_len=2048)
    assert 300 < size < 2000  # a 2,048-token model cannot take 2,000 words
    notes = pl.DataFrame({"stay_id": [1, 2], "note_id": ["long", "short"], "text": [" ".join(["word"] * 10_000), "CHF."]})
    requests, rows = extraction_requests(notes, settings, 2048)
    assert rows == [0, 0, 0, 0, 1]  # the long note is cut at max_chunks
    assert len(requests[0].messages[-1]["content"].split()) <= size + 60


def test_refinement_keeps_entities_in_the_note_with_counts_and_negation():
    notes = pl.DataFrame({
        "stay_id": [7], "note_id": ["n1"],
        "text": ["Pt with CHF and pneumonia. Repeat CXR shows pneumonia. No evidence of sepsis. Mother had lupus."],
    })
    raw = {0: ["CHF", "pneumonia", "pneumonia", "sepsis", "lupus", "heart attack"]}
    entities = refine(notes, raw, ABBREVIATIONS)
    rows = {r["entity"]: (r["count"], r["negated"], r["family"]) for r in entities.iter_rows(named=True)}
    assert rows == {
        "pneumonia": (2, False, False),
        "congestive heart failure": (1, False, False),
        "sepsis": (1, True, False),
        "lupus": (1, False, True),
    }  # "heart attack" is not in the note: dropped
    assert set(entities.get_column("method")) == {"llm"}


@pytest.mark.parametrize("entity, condition", [
    ("pt denies chest pain", "chest pain"),
    ("no evidence of pneumonia", "pneumonia"),
    ("family history of CAD", "CAD"),
    ("His mother had breast cancer", "breast cancer"),
    ("He does not have diabetes", "diabetes"),
    ("pneumonia ruled out", "pneumonia"),
    ("DVT ppx", "DVT"),
    ("r/o MI", "MI"),
    ("denies", ""),  # a cue and no condition
    ("non-small cell lung cancer", "non-small cell lung cancer"),  # "non" is not "no"
    ("Nodular goiter", "Nodular goiter"),
    ("undenied fever", "undenied fever"),  # a cue inside a longer word is no cue
    ("dementia without behavioral disturbance", "dementia without behavioral disturbance"),  # part of a name
    ("pneumonia not ruled out", "pneumonia not ruled out"),  # a pseudo-cue
    ("gram negative bacteremia", "gram negative bacteremia"),
    ("  CHF ", "CHF"),
])
def test_cues_inside_llm_entities_are_cut_off(entity, condition):
    assert condition_of(entity) == condition


def test_a_denied_entity_named_with_its_cue_comes_out_negated():
    notes = pl.DataFrame({"stay_id": [1], "note_id": ["n"], "text": [
        "Pt denies chest pain. No evidence of pneumonia. Family history of CAD. Known COPD."]})
    raw = {0: ["pt denies chest pain", "no evidence of pneumonia", "family history of CAD", "COPD", "denies"]}
    rows = {r["entity"]: (r["negated"], r["family"]) for r in refine(notes, raw, ABBREVIATIONS).iter_rows(named=True)}
    assert rows == {
        "chest pain": (True, False),
        "pneumonia": (True, False),
        "coronary artery disease": (False, True),
        "chronic obstructive pulmonary disease": (False, False),
    }


def test_chunks_too_dense_for_the_word_estimate_are_split_to_fit_the_context():
    """Lab tables run to 7 tokens a word: a chunk of words sized for 1.5 would overflow the context."""
    labs = " ".join(f"WBC-{i}.2* Hgb-9.{i}*" for i in range(3000))
    notes = pl.DataFrame({"stay_id": [1], "note_id": ["labs"], "text": [labs + " " + "x" * 50_000]})
    settings = ExtractionSettings.from_config(DEFAULTS, max_chunks=4)

    def prompt_tokens(messages: list[dict]) -> int:  # about 4 tokens a lab value, as a BPE tokenizer counts them
        return 300 + 4 * len(messages[-1]["content"].split())

    requests, rows = extraction_requests(notes, settings, 2048, prompt_tokens)
    assert len(requests) == 4 and rows == [0] * 4
    assert all(prompt_tokens(r.messages) + settings.max_tokens <= 2048 for r in requests)
    without_spaces = pl.DataFrame({"stay_id": [1], "note_id": ["blob"], "text": ["x" * 240_000]})
    requests, _ = extraction_requests(without_spaces, settings, 2048, lambda m: 300 + len(m[-1]["content"]) // 2)
    assert len(requests) == 4 and all(300 + len(r.messages[-1]["content"]) // 2 + 192 <= 2048 for r in requests)


def test_empty_and_blank_notes_make_no_requests_and_no_engine_start(monkeypatch, tmp_path):
    from emerge_ehr.llm import backends
    from emerge_ehr.llm.stages import llm_entities

    def no_engine(self):
        raise AssertionError("the engine was started for notes without text")

    monkeypatch.setattr(backends.VLLMBackend, "start", no_engine)
    monkeypatch.setattr(backends, "prompt_length", lambda settings: None)  # the fake model has no tokenizer
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    notes = pl.DataFrame({"stay_id": [1, 2, 3], "note_id": ["empty", "blank", "null"], "text": ["", " \n\t  \n", None]})
    assert extraction_requests(notes, ExtractionSettings.from_config(DEFAULTS), 2048) == ([], [])
    notes.write_parquet(tmp_path / "notes.parquet")
    llm_entities(str(tmp_path / "notes.parquet"), str(REPO / "config" / "abbreviations.yaml"), 0, 1,
                 asdict(LLMSettings.from_config(DEFAULTS, model=str(model))),
                 asdict(ExtractionSettings.from_config(DEFAULTS)), str(tmp_path / "cache"),
                 str(tmp_path / "entities.parquet"), str(tmp_path / "stats.json"))
    assert pl.read_parquet(tmp_path / "entities.parquet").is_empty()
    assert json.loads((tmp_path / "stats.json").read_text())["prompts"] == 0


def test_stays_without_knowledge_get_a_summary_without_a_call():
    context = pl.DataFrame({
        "task": ["mortality", "mortality"], "stay_id": [1, 2],
        "abnormal_features": [["heart rate too high"], []], "node_indices": [[3], []], "node_names": [["Sepsis"], []],
        "definitions": ["Sepsis: infection with organ dysfunction.", ""], "triples": ["(Sepsis, phenotype present, Fever)", ""],
    })
    requests, prompts = summary_requests(context, SummarySettings.from_config(DEFAULTS))
    assert len(requests) == 1 and prompts[1]["messages"] is None
    content = requests[0].messages[-1]["content"]
    for section in ("Potential abnormal features", "Possible diseases", "Definitions and descriptions",
                    "Knowledge graph relations", "heart rate too high", "(Sepsis, phenotype present, Fever)"):
        assert section in content
    from emerge_ehr.llm.runner import Result

    table = summaries_table(prompts, [Result({"summary": "Septic, tachycardic patient."}, None, 1)])
    assert table.get_column("status").to_list() == ["ok", "empty"]
    assert table.get_column("summary")[1] == NOTHING_FOUND and table.get_column("prompt_sha256")[1] is None
    assert len(table.get_column("prompt_sha256")[0]) == 64


# --- the real engines -------------------------------------------------------------------------------


PRELOAD_SCRIPT = """
import sys
sys.path.insert(0, {src!r})
from emerge_ehr.runtime import start_job
start_job(1, {log!r}, fast_allocator=True)
maps = open("/proc/self/maps").read()
print("MAPPED", "tcmalloc" in maps or "mimalloc" in maps)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_llm_jobs_restart_once_with_a_faster_allocator(tmp_path):
    from emerge_ehr.runtime import allocator_library

    if allocator_library() is None:
        pytest.skip("neither tcmalloc nor the cmeel-mimalloc package is installed")
    script = PRELOAD_SCRIPT.format(src=str(REPO / "src"), log=str(tmp_path / "job.log"))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "EMERGE_PRELOADED_ALLOCATOR")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["MAPPED", "True"]
    assert "malloc: " in (tmp_path / "job.log").read_text()
