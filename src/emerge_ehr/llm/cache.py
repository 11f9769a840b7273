"""A persistent, content-addressed store of LLM answers, written the moment each answer arrives.

The key is the sha256 of the backend's model identity, the full prompt (messages and schema) and the
decoding parameters, so a rerun with the same settings makes no LLM call, a killed run resumes where it
stopped, and changing anything that affects the answer asks again. Each shard job writes its own segment and
reads everyone's sealed ones (``cache_store``), so shard jobs on different cluster nodes never share a file
they write. Answers are patient-derived data: the cache lives under the results folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from emerge_ehr.cache_store import SegmentedCache


def request_key(model_identity: str, messages: list[dict], schema: dict | None, decoding: dict) -> str:
    payload = json.dumps(
        {"model": model_identity, "messages": messages, "schema": schema, "decoding": decoding},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    """Answers in ``directory`` (``{cache_dir}/llm-answers``), written by the job whose output is ``writer``."""

    def __init__(self, directory: str | Path, writer: str) -> None:
        self.store = SegmentedCache(directory, "answers", "answer", "TEXT", writer)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        return self.store.get_many(keys)

    def put_many(self, items: list[tuple[str, str]]) -> None:
        """Committed at once: a batch's answers are all cached or none."""
        self.store.put_many(items)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "AnswerCache":
        return self

    def __exit__(self, *_exception) -> None:
        self.close()  # sealed however the job ends, so that what it computed is read by every later job
