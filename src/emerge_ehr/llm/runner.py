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

    def as_dict(self) -> dict:
        return self.__dict__ | {"prompts_per_second": self.calls / self.seconds if self.seconds else None,
                                "tokens_per_second": self.generated_tokens / self.seconds if self.seconds else None}


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


def run(requests: list[Request], backend, cache: AnswerCache, settings: LLMSettings, label: str) -> tuple[list[Result], RunStats]:
    """Answers for all requests, in order."""
    stats = RunStats(prompts=len(requests))
    started = time.perf_counter()
    results: list[Result | None] = [None] * len(requests)
    pending = list(range(len(requests)))
    current = list(requests)
    for attempt in range(settings.max_attempts):
        keys = [request_key(backend.identity, current[i].messages, current[i].schema, decoding(settings, current[i]))
                for i in pending]
        stored = cache.get_many(keys)
        stats.cache_hits += sum(k in stored for k in keys)
        missing = [(i, k) for i, k in zip(pending, keys) if k not in stored]
        if missing and hasattr(backend, "start_once"):
            backend.start_once()  # so that the rates below are the engine's, not its start-up
        progress = Progress(f"{label}, attempt {attempt + 1}", len(missing), "uncached prompts")
        for start in range(0, len(missing), settings.batch_size):
            batch = missing[start : start + settings.batch_size]
            before = progress.done
            answers = backend.generate([current[i] for i, _ in batch], progress)
            progress.advance(len(batch) - (progress.done - before))  # backends that do not count as they go
            for (i, key), answer in zip(batch, answers):
                cache.put(key, answer.text)
                stored[key] = answer.text
                stats.generated_tokens += answer.tokens
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
        "%s: %d prompts, %d cache hits, %d LLM calls, %d retries, %d failures %s, %d tokens in %.1f s",
        label, stats.prompts, stats.cache_hits, stats.calls, stats.retries, stats.failures, stats.failure_reasons,
        stats.generated_tokens, stats.seconds,
    )
    return results, stats
