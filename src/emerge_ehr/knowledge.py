"""Stage functions of the knowledge layer: KG, entity index, abnormal features, entities, alignment, retrieval.

Like ``emerge_ehr.stages``, each reads the stage's input files, calls the pure logic and writes its
outputs; the Snakemake scripts only map the ``snakemake`` object onto these.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl

from emerge_ehr.data.abnormal import abnormal_features, load_abnormal_terms
from emerge_ehr.data.tables import InputError
from emerge_ehr.stages import write_parquet_atomically

log = logging.getLogger("emerge_ehr")


def build_kg(kind: str, root: str | None, out_dir: str | Path, max_icd_codes: int | None = None) -> None:
    from emerge_ehr.kg.builtin import build_builtin_kg
    from emerge_ehr.kg.primekg import build_primekg

    started = time.perf_counter()
    if kind == "primekg":
        stats = build_primekg(root, out_dir)
    else:
        stats = build_builtin_kg(out_dir, max_icd_codes=max_icd_codes)
    log.info("knowledge graph (%s) built in %.1f s: %s", kind, time.perf_counter() - started, stats)


def download_kg(kg_url: str, disease_features_url: str, out_dir: str | Path) -> None:
    from emerge_ehr.kg.download import download_primekg

    download_primekg(kg_url, disease_features_url, out_dir)
    log.info("PrimeKG downloaded to %s", out_dir)


def _encoder(settings: dict):
    from emerge_ehr.text.encoder import EncoderSettings, TextEncoder

    return TextEncoder(EncoderSettings(**settings))


def _cache(cache_dir: str | Path, encoder, writer: str):
    """The embedding cache of this encoder, written by the job whose output is ``writer``."""
    from emerge_ehr.text.encoder import EmbeddingCache

    return EmbeddingCache(Path(cache_dir) / f"embeddings-{encoder.identity}", encoder.dimension, writer)


def build_kg_index(nodes_path: str, out_dir: str | Path, encoder_settings: dict, index_settings: dict, cache_dir: str) -> None:
    from emerge_ehr.kg.index import IndexSettings, build_index, index_entries, save_index
    from emerge_ehr.text.encoder import embed_cached

    started = time.perf_counter()
    settings = IndexSettings(**index_settings | {"node_types": tuple(index_settings["node_types"])})
    entries = index_entries(pl.read_parquet(nodes_path), settings)
    if entries.height == 0:
        raise InputError(f"{nodes_path}: no nodes of the types {list(settings.node_types)} (setting kg_index.node_types)")
    encoder = _encoder(encoder_settings)
    with _cache(cache_dir, encoder, str(out_dir)) as cache:
        vectors, _ = embed_cached(entries.get_column("text").to_list(), encoder, cache)
    index = build_index(vectors, settings)
    save_index(index, entries, settings, {"model": encoder_settings["model"], "identity": encoder.identity,
                                          "dtype": encoder.dtype, "dimension": encoder.dimension}, out_dir)
    log.info("index of %d strings for %d nodes built in %.1f s", entries.height, entries["node_index"].n_unique(),
             time.perf_counter() - started)


def abnormal(events_path: str, cohort_path: str, terms_path: str, threshold: float, out: str,
             source_events_path: str | None = None, source_cohort_path: str | None = None) -> None:
    """Abnormal values as entities; z-scored against the cohort's training split, or (external validation)
    against the training split of the dataset the model was developed on (``source_*``)."""
    from emerge_ehr.data.abnormal import training_distribution

    distribution = (training_distribution(pl.scan_parquet(source_events_path), pl.scan_parquet(source_cohort_path))
                    if source_events_path else None)
    table = abnormal_features(
        pl.scan_parquet(events_path), pl.scan_parquet(cohort_path), load_abnormal_terms(terms_path), threshold,
        distribution,
    ).collect()
    write_parquet_atomically(table, out)
    log.info("abnormal features: %d rows for %d stays", table.height, table.get_column("stay_id").n_unique())


NOTES_PER_BATCH = 50_000  # the lexicon reads this many notes at a time: all 1.4 million of full MIMIC-IV's, 6.4 GB


def lexicon_entities(notes_path: str, nodes_path: str, abbreviations_path: str, node_types: list[str], out: str) -> None:
    from emerge_ehr.text.lexicon import Lexicon, extract_entities, load_abbreviations, sort_entities

    started = time.perf_counter()
    terms = pl.read_parquet(nodes_path).filter(pl.col("type").is_in(node_types)).select("name", "synonyms")
    lexicon = Lexicon.from_terms(terms, load_abbreviations(abbreviations_path))
    notes = pl.scan_parquet(notes_path).select("stay_id", "note_id", "text")
    total = notes.select(pl.len()).collect().item()
    entities = sort_entities(pl.concat([extract_entities(notes.slice(start, NOTES_PER_BATCH).collect(), lexicon)
                                        for start in range(0, max(total, 1), NOTES_PER_BATCH)]))
    write_parquet_atomically(entities, out)
    log.info("lexicon: %d entity rows from %d notes (%d unique entities) in %.1f s", entities.height, total,
             entities.get_column("entity").n_unique(), time.perf_counter() - started)


def align_queries(entities: pl.DataFrame, abnormal_table: pl.DataFrame) -> pl.DataFrame:
    """Unique strings to align across the whole cohort: entity, source (note/abnormal), phenotype."""
    from_notes = entities.select("entity").unique().with_columns(
        pl.lit("note").alias("source"), pl.lit(None, dtype=pl.String).alias("phenotype")
    )
    from_abnormal = abnormal_table.select(pl.col("phrase").alias("entity"), "phenotype").unique().with_columns(
        pl.lit("abnormal").alias("source")
    )
    queries = pl.concat([from_notes.select("entity", "source", "phenotype"), from_abnormal.select("entity", "source", "phenotype")])
    return queries.unique(["entity", "source"], keep="first").sort("source", "entity")


def align(
    entities_path: str, abnormal_path: str, nodes_path: str, index_dir: str, encoder_settings: dict,
    align_settings: dict, cache_dir: str, out: str,
) -> None:
    from emerge_ehr.kg.align import AlignSettings
    from emerge_ehr.kg.align import align as align_entities
    from emerge_ehr.kg.index import load_index
    from emerge_ehr.text.encoder import embed_cached

    queries = align_queries(pl.read_parquet(entities_path), pl.read_parquet(abnormal_path))
    index, entries, info = load_index(index_dir)
    encoder = _encoder(encoder_settings)
    if info["encoder"]["identity"] != encoder.identity:
        built = info["encoder"]
        raise InputError(
            f"{index_dir} was built with encoder {built['model']} in {built.get('dtype', 'float32')}"
            f" ({built['identity']}), not {encoder_settings['model']} in {encoder.dtype} ({encoder.identity}):"
            " rebuild it (snakemake --forcerun kg_index), or set text_encoder.dtype to the index's"
        )
    with _cache(cache_dir, encoder, out) as cache:
        vectors, stats = embed_cached(queries.get_column("entity").to_list(), encoder, cache)
    started = time.perf_counter()
    table = align_entities(queries, vectors, index, entries, pl.read_parquet(nodes_path), AlignSettings(**align_settings))
    write_parquet_atomically(table, out)
    log.info(
        "aligned %d strings (%d accepted) in %.2f s search; embedding cache hits %d, misses %d",
        table.height, table.get_column("accepted").sum(), time.perf_counter() - started, stats.hits, stats.misses,
    )


def retrieve(
    entities_path: str, notes_path: str, abnormal_path: str, aligned_path: str, nodes_path: str, edges_path: str,
    cohort_path: str, tasks: list[str], settings: dict, out: str,
) -> None:
    from emerge_ehr.kg.retrieve import RetrieveSettings, build_context

    context = build_context(
        pl.read_parquet(entities_path),
        pl.read_parquet(notes_path, columns=["stay_id", "note_id", *tasks]),
        pl.read_parquet(abnormal_path),
        pl.read_parquet(aligned_path),
        pl.read_parquet(nodes_path, columns=["index", "name", "definition", "description"]),
        pl.scan_parquet(edges_path),
        tasks,
        pl.read_parquet(cohort_path, columns=["stay_id"]).get_column("stay_id"),
        RetrieveSettings(**settings),
    )
    write_parquet_atomically(context, out)
    sizes = context.group_by("task").agg(pl.col("node_indices").list.len().mean().alias("nodes")).sort("task")
    log.info("context: %s", {task: round(float(n), 2) for task, n in sizes.rows()})


def knowledge_texts(context_path: str, encoder_model: str, out: str) -> None:
    """The retrieved knowledge as text without an LLM (``knowledge.parquet``), cut to what the encoder reads."""
    from emerge_ehr.kg.knowledge_text import knowledge_table
    from emerge_ehr.text.encoder import token_counter

    started = time.perf_counter()
    count_tokens, max_tokens = token_counter(encoder_model)
    table = knowledge_table(pl.read_parquet(context_path), count_tokens, max_tokens)
    write_parquet_atomically(table, out)
    log.info(
        "knowledge texts: %d rows, by status %s; %d cut to the encoder's %d tokens; mean %.0f tokens (%.1f s)",
        table.height, dict(table.group_by("status").len().sort("status").rows()),
        (table.get_column("left_out") > 0).sum(), max_tokens, table.get_column("tokens").mean() or 0,
        time.perf_counter() - started,
    )


def _stay_texts(path: str | None, task: str, text_column: str) -> pl.DataFrame:
    """stay_id, status, text of one task; no rows where the method is not configured (no file)."""
    if path is None:
        return pl.DataFrame(schema={"stay_id": pl.Int64, "status": pl.String, "text": pl.String})
    return (
        pl.read_parquet(path, columns=["task", "stay_id", "status", text_column])
        .filter((pl.col("task") == task) & pl.col(text_column).is_not_null())
        .select("stay_id", "status", pl.col(text_column).alias("text"))
    )


def usable_notes(notes_path: str, task: str) -> pl.DataFrame:
    """The notes usable for ``task``, and only those read: all of full MIMIC-IV's are 2.3 GB of text."""
    return (pl.scan_parquet(notes_path).select("stay_id", "note_id", "charttime", "text", task)
            .filter(pl.col(task)).collect())


def embed_notes(notes_path: str, tasks: list[str], encoder_settings: dict, chunk_words: int, max_chunks: int,
                shard: int, shards: int, cache_dir: str, out: str) -> None:
    """One shard of the note-chunk embeddings of every task, into the embedding cache (``embed`` reads them
    there); ``out`` gets the shard's counts."""
    from emerge_ehr.text.embed import note_chunks
    from emerge_ehr.text.encoder import embed_shard

    texts = [text for task in tasks
             for text in note_chunks(usable_notes(notes_path, task), task, chunk_words, max_chunks).get_column("text")]
    encoder = _encoder(encoder_settings)
    with _cache(cache_dir, encoder, out) as cache:
        stats = embed_shard(texts, encoder, cache, shard, shards)
    # the same in every run (hits, misses and time, which depend on the cache and the machine, are in the log)
    Path(out).write_text(json.dumps({"shard": shard, "shards": shards, "unique": stats.unique}, indent=2) + "\n")


def embed(
    notes_path: str, summaries_path: str | None, knowledge_path: str | None, context_path: str, cohort_path: str,
    task: str, encoder_settings: dict, chunk_words: int, max_chunks: int, max_nodes: int, cache_dir: str, out: str,
) -> None:
    """Note-chunk, LLM-summary, knowledge-text and node embeddings of every stay for one task
    (``embeddings/{task}.npz``).

    ``summaries_path`` or ``knowledge_path`` is None where ``summaries.method`` leaves that method out: its
    arrays are then all masked. The nodes are the definition lines of the retrieved context (``context_path``),
    one token per node, at most ``max_nodes`` (``retrieve.max_nodes``).
    """
    from emerge_ehr.text.embed import node_lines, note_chunks, text_arrays
    from emerge_ehr.text.encoder import embed_cached

    chunks = note_chunks(usable_notes(notes_path, task), task, chunk_words, max_chunks)
    summaries = _stay_texts(summaries_path, task, "summary")
    knowledge = _stay_texts(knowledge_path, task, "text")
    nodes = node_lines(pl.read_parquet(context_path, columns=["task", "stay_id", "node_names", "definitions"]), task,
                       max_nodes)
    encoder = _encoder(encoder_settings)
    vectors, hits, misses = {}, 0, 0
    with _cache(cache_dir, encoder, out) as cache:
        for name, texts in (("notes", chunks), ("summary", summaries), ("knowledge", knowledge), ("nodes", nodes)):
            vectors[name], stats = embed_cached(texts.get_column("text").to_list(), encoder, cache)
            hits, misses = hits + stats.hits, misses + stats.misses
    stays = pl.read_parquet(cohort_path, columns=["stay_id"]).get_column("stay_id").to_numpy()
    arrays = text_arrays(stays, chunks, vectors["notes"], summaries, vectors["summary"], knowledge,
                         vectors["knowledge"], nodes, vectors["nodes"], max_chunks, max_nodes, encoder.dimension)
    tmp = Path(out + ".partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    log.info(
        "%s embeddings: %d stays, %d with notes, %d with a non-empty summary, %d with knowledge text of findings,"
        " %d with retrieved nodes (%d node tokens); cache hits %d, misses %d",
        task, len(stays), int(arrays["notes_mask"].any(axis=1).sum()), int(arrays["summary_has_knowledge"].sum()),
        int(arrays["knowledge_has_findings"].sum()), int(arrays["nodes_mask"].any(axis=1).sum()),
        int(arrays["nodes_mask"].sum()), hits, misses,
    )
