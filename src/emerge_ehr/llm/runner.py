"""Runs prompts through the answer cache and a backend, validating answers against their JSON schema.

A malformed, truncated or empty answer never crashes a stage: it is retried (with sampling) up to
``max_attempts`` times, then recorded as a failure with its reason. Every answer is cached as soon as its
batch returns, so a killed job resumes without repeating finished calls. Logs carry counts only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace

import jsonschema

from emerge_ehr.llm.backends import LLMSettings, Request, decoding
from emerge_ehr.llm.cache import AnswerCache, request_key
from emerge_ehr.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    prompts: int = 0
    cache_hits: int = 0
    calls: int = 0
    generated_tokens: int = 0
    failures: int = 0
    retries: int = 0
    seconds: float = 0.0
    failure_reasons: dict = field(default_factory=dict)

    def outcome(self) -> dict:
        """What the answers were (the stage's stats file): the same in every run of the same prompts, however much
        came from the cache and however long it took, which the job's log says instead."""
        return {"prompts": self.prompts, "retries": self.retries, "failures": self.failures,
                "failure_reasons": dict(sorted(self.failure_reasons.items()))}


@dataclass(frozen=True)
class Result:
    value: dict | None  # the parsed, schema-valid answer, or None on failure
    error: str | None
    attempts: int


def parse_answer(text: str, schema: dict) -> tuple[dict | None, str | None]:
    """The answer as JSON valid under ``schema``, or None and the reason it is not."""
    if not text or not text.strip():
        return None, "empty answer"
    start = text.find("{")
    try:
        value = json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError:
        try:  # models without constrained decoding often add text after the object
            value, _ = json.JSONDecoder().raw_decode(text[start:])
        except (json.JSONDecodeError, ValueError):
            return None, "not JSON (malformed or truncated)"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as err:
        return None, f"schema violation at {'/'.join(map(str, err.absolute_path)) or 'top level'}"
    return value, None


def content_batches(keys: list[str], size: int) -> list[range]:
    """The engine calls over requests with these cache keys, in order: a batch ends after each request whose key,
    as a number, is divisible by ``size`` (so batches hold ``size`` requests on average), or at ``4 * size``.

    The batches are a function of the requests alone, never of what the cache holds, and a request added or
    removed changes only its own batch: a rerun with new stays recomputes the batches they join, no others.

    >>> keys = ["3", "a", "4", "7", "8"]  # hexadecimal: 3, 10, 4, 7, 8
    >>> [list(b) for b in content_batches(keys, 2)]
    [[0, 1], [2], [3, 4]]
    >>> [list(b) for b in content_batches(["3", "a", "5", "4", "7", "8"], 2)]  # "5" joins one batch only
    [[0, 1], [2, 3], [4, 5]]
    """
    batches, start = [], 0
    for end, key in enumerate(keys, start=1):
        if int(key[:15], 16) % size == 0 or end - start >= 4 * size:
            batches.append(range(start, end))
            start = end
    return batches + ([range(start, len(keys))] if start < len(keys) else [])


def run(requests: list[Request], backend, cache: AnswerCache, settings: LLMSettings, label: str) -> tuple[list[Result], RunStats]:
    """Answers for all requests, in order.

    The engine sees batches that depend on the requests alone (``content_batches``, about ``llm.batch_size``
    each): a batch with any request the cache lacks is sent whole, and its own answers are used, so that a job
    resumed after a kill, or run beside a cache that holds some of its answers, computes every batch it computes
    exactly as an uninterrupted run would (a CPU engine's numbers depend on the other prompts of a batch).
    """
    stats = RunStats(prompts=len(requests))
    started = time.perf_counter()
    results: list[Result | None] = [None] * len(requests)
    pending = list(range(len(requests)))
    current = list(requests)
    for attempt in range(settings.max_attempts):
        keys = [request_key(backend.identity, current[i].messages, current[i].schema, decoding(settings, current[i]))
                for i in pending]
        stored = cache.get_many(keys)
        batches = [batch for batch in content_batches(keys, settings.batch_size)
                   if any(keys[j] not in stored for j in batch)]
        stats.cache_hits += len(pending) - sum(map(len, batches))
        if batches and hasattr(backend, "start_once"):
            backend.start_once()  # so that the rates below are the engine's, not its start-up
        progress = Progress(f"{label}, attempt {attempt + 1}", sum(map(len, batches)), "prompts to answer")
        for batch in batches:
            before = progress.done
            answers = backend.generate([current[pending[j]] for j in batch], progress)
            progress.advance(len(batch) - (progress.done - before))  # backends that do not count as they go
            cache.put_many([(keys[j], answer.text) for j, answer in zip(batch, answers)])  # one commit a batch
            stored |= {keys[j]: answer.text for j, answer in zip(batch, answers)}
            stats.generated_tokens += sum(answer.tokens for answer in answers)
            stats.calls += len(batch)
        retry = []
        for i, key in zip(pending, keys):
            value, error = parse_answer(stored[key], current[i].schema)
            results[i] = Result(value, error, attempt + 1)
            if error is not None:
                retry.append(i)
        if not retry:
            break
        stats.retries += len(retry) if attempt + 1 < settings.max_attempts else 0
        pending = retry
        again = set(retry)
        current = [replace(r, attempt=attempt + 1) if n in again else r for n, r in enumerate(current)]
    for result in results:
        if result.error is not None:
            stats.failures += 1
            stats.failure_reasons[result.error] = stats.failure_reasons.get(result.error, 0) + 1
    stats.seconds = time.perf_counter() - started
    log.info(
        "%s: %d prompts, %d cache hits, %d LLM calls, %d retries, %d failures %s, %d tokens in %.1f s (%s prompts/s)",
        label, stats.prompts, stats.cache_hits, stats.calls, stats.retries, stats.failures, stats.failure_reasons,
        stats.generated_tokens, stats.seconds, f"{stats.calls / stats.seconds:.2f}" if stats.seconds else "-",
    )
    return results, stats
