"""Stage functions of the LLM stages: model conversion, sharded entity extraction and summaries, gathering."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl

from emerge_ehr.llm.backends import LLMSettings, make_backend
from emerge_ehr.llm.cache import AnswerCache
from emerge_ehr.llm.runner import run
from emerge_ehr.stages import write_parquet_atomically

log = logging.getLogger("emerge_ehr")


def prepare_model(package: str, out_dir: str) -> None:
    from emerge_ehr.llm.models import convert_gguf, packaged_gguf

    convert_gguf(packaged_gguf(package), out_dir)


def _read_shard(path: str, shard: int, shards: int) -> pl.DataFrame:
    """Rows of one shard: by stay, so a stay's prompts stay together and shards stay stable as stays are added.
    Read by the streaming engine, so that a job never holds the other shards' note text (1.4 million notes at
    full MIMIC-IV size)."""
    return pl.scan_parquet(path).filter(pl.col("stay_id") % shards == shard).collect(engine="streaming")


def _settings(llm: dict) -> LLMSettings:
    return LLMSettings(**llm)


def _run(requests, llm: dict, cache_dir: str, label: str, stats_out: str):
    settings = _settings(llm)
    backend = make_backend(settings)
    with AnswerCache(Path(cache_dir) / "llm-answers", writer=stats_out) as cache:
        results, stats = run(requests, backend, cache, settings, label)
    Path(stats_out).write_text(json.dumps(stats.outcome(), indent=2) + "\n")
    return results


def llm_entities(
    notes_path: str, abbreviations_path: str, shard: int, shards: int, llm: dict, extraction: dict,
    cache_dir: str, out: str, stats_out: str,
) -> None:
    from emerge_ehr.llm.backends import prompt_length
    from emerge_ehr.llm.extract import ExtractionSettings, extraction_requests, refine
    from emerge_ehr.text.lexicon import load_abbreviations

    notes = _read_shard(notes_path, shard, shards)
    settings = _settings(llm)
    requests, rows = extraction_requests(notes, ExtractionSettings(**extraction), settings.max_model_len,
                                         prompt_length(settings))
    results = _run(requests, llm, cache_dir, f"entities shard {shard + 1}/{shards}", stats_out)
    answers: dict[int, list[str]] = {}
    for row, result in zip(rows, results):
        answers.setdefault(row, []).extend(result.value["entities"] if result.value else [])
    entities = refine(notes, answers, load_abbreviations(abbreviations_path))
    write_parquet_atomically(entities, out)
    log.info("llm entities shard %d/%d: %d notes, %d entity rows", shard + 1, shards, notes.height, entities.height)


def gather_entities(paths: list[str], out: str) -> None:
    """All methods' entities in one table (the ``entities`` contract)."""
    frames = [pl.read_parquet(p) for p in paths]
    table = pl.concat(frames).sort(
        ["stay_id", "note_id", "method", "count", "entity"], descending=[False, False, False, True, False]
    )
    write_parquet_atomically(table, out)
    log.info("entities: %s", dict(table.group_by("method").len().sort("method").rows()))


def summarize(context_path: str, shard: int, shards: int, llm: dict, summary: dict, cache_dir: str, out: str,
              stats_out: str) -> None:
    from emerge_ehr.llm.summarize import SummarySettings, summaries_table, summary_requests

    context = _read_shard(context_path, shard, shards)
    requests, prompts = summary_requests(context, SummarySettings(**summary))
    results = _run(requests, llm, cache_dir, f"summaries shard {shard + 1}/{shards}", stats_out)
    table = summaries_table(prompts, results)
    write_parquet_atomically(table, out)
    log.info("summaries shard %d/%d: %s", shard + 1, shards, dict(table.group_by("status").len().sort("status").rows()))


def gather_summaries(paths: list[str], out: str) -> None:
    table = pl.concat([pl.read_parquet(p) for p in paths]).sort("task", "stay_id")
    write_parquet_atomically(table, out)
    log.info("summaries: %s", dict(table.group_by("status").len().sort("status").rows()))


def entity_quality(entities_path: str, truth_path: str, cohort_path: str, abbreviations_path: str, out_json: str,
                   out_md: str) -> None:
    """Synthetic datasets only: extraction precision and recall against the planted conditions."""
    from emerge_ehr.evaluate.entities import condition_keys, extraction_quality, quality_markdown
    from emerge_ehr.text.lexicon import load_abbreviations

    rows = extraction_quality(
        pl.read_parquet(entities_path), pl.read_parquet(truth_path),
        pl.read_parquet(cohort_path, columns=["stay_id"]).get_column("stay_id"),
        condition_keys(load_abbreviations(abbreviations_path)),
    )
    Path(out_json).write_text(json.dumps(rows, indent=2) + "\n")
    Path(out_md).write_text(quality_markdown(rows))
    log.info("entity quality: %s", {r["method"]: (r["precision"], r["recall"]) for r in rows})
