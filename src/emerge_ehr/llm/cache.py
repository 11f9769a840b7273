"""A persistent, content-addressed store of LLM answers, written the moment each answer arrives.

The key is the sha256 of the backend's model identity, the full prompt (messages and schema) and the
decoding parameters, so a rerun with the same settings makes no LLM call, a killed run resumes where it
stopped, and changing anything that affects the answer asks again. SQLite in WAL mode keeps it safe when
several shard jobs write at once. Answers are patient-derived data: the cache lives under the results folder.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path


def request_key(model_identity: str, messages: list[dict], schema: dict | None, decoding: dict) -> str:
    payload = json.dumps(
        {"model": model_identity, "messages": messages, "schema": schema, "decoding": decoding},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path), timeout=120)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, tokens INTEGER,"
            " created REAL NOT NULL)"
        )
        self.connection.commit()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            rows = self.connection.execute(
                f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(dict(rows))
        return found

    def put(self, key: str, answer: str, tokens: int | None = None) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO answers (key, answer, tokens, created) VALUES (?, ?, ?, ?)",
            (key, answer, tokens, time.time()),
        )
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()
