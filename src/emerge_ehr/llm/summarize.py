"""Task-relevant patient summaries written by an LLM from the retrieved knowledge (EMERGE section 5).

The prompt has the method's four sections (abnormal features, possible diseases, their definitions and
descriptions, knowledge-graph relations) and asks for a concise summary useful for predicting in-hospital
mortality and 30-day readmission. Sections are trimmed to fit the model's context.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import polars as pl

from emerge_ehr.llm.backends import Request
from emerge_ehr.settings import settings as _settings

SUMMARY_SCHEMA_TEMPLATE = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 20}},
    "required": ["summary"],
    "additionalProperties": False,
}
SUMMARY_COLUMNS = {
    "task": pl.String, "stay_id": pl.Int64, "prompt_sha256": pl.String, "summary": pl.String,
    "status": pl.String, "error": pl.String, "attempts": pl.Int32,
}
NOTHING_FOUND = (
    "No abnormal vital signs or laboratory values were found in the first hours of the ICU stay, and no"
    " diseases from the notes could be matched to the knowledge graph."
)
SYSTEM = "You are an intensive care physician writing a short, factual summary of a patient for a colleague."


@dataclass(frozen=True)
class SummarySettings:
    max_tokens: int
    max_summary_chars: int
    max_prompt_chars: int  # about 600 tokens of context: quick on a CPU, fits a 2,048-token model

    @classmethod
    def from_config(cls, config: dict, **values) -> "SummarySettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["summaries"], "summaries", **values)


def summary_schema(settings: SummarySettings) -> dict:
    schema = json.loads(json.dumps(SUMMARY_SCHEMA_TEMPLATE))
    schema["properties"]["summary"]["maxLength"] = settings.max_summary_chars
    return schema


def _section(title: str, lines: list[str], budget: int) -> str:
    body, used = [], 0
    for line in lines:
        if used + len(line) > budget:
            break
        body.append(line)
        used += len(line) + 1
    return f"{title}:\n" + ("\n".join(body) if body else "none")


def summary_messages(row: dict, settings: SummarySettings) -> list[dict]:
    """The prompt of one stay and task, from a ``context.parquet`` row."""
    budget = settings.max_prompt_chars // 4
    sections = [
        _section("Potential abnormal features", row["abnormal_features"], budget),
        _section("Possible diseases", row["node_names"], budget),
        _section("Definitions and descriptions", [line[:300] for line in row["definitions"].splitlines()], budget),
        _section("Knowledge graph relations", row["triples"].splitlines(), budget),
    ]
    request = (
        "Below is what is known about a patient in the first 48 hours of an ICU stay: abnormal vital signs and"
        " laboratory values, possible diseases found in the clinical notes, their definitions, and related facts"
        " from a medical knowledge graph.\n\n" + "\n\n".join(sections) + "\n\nWrite a concise summary of this"
        " patient's health status in a few sentences, focusing on what matters for predicting in-hospital"
        " mortality and readmission within 30 days. Do not invent findings. Answer only with JSON of the form"
        ' {"summary": "..."}.'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request}]


def prompt_sha256(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def has_knowledge(row: dict) -> bool:
    return bool(row["abnormal_features"] or row["node_names"])


def summary_requests(context: pl.DataFrame, settings: SummarySettings) -> tuple[list[Request], list[dict]]:
    """Requests for the rows with anything to summarise, and every row's prompt (None where empty)."""
    schema = summary_schema(settings)
    requests, prompts = [], []
    for row in context.iter_rows(named=True):
        messages = summary_messages(row, settings) if has_knowledge(row) else None
        prompts.append({"task": row["task"], "stay_id": row["stay_id"], "messages": messages})
        if messages is not None:
            requests.append(Request(messages, schema, settings.max_tokens))
    return requests, prompts


def summaries_table(prompts: list[dict], results: list) -> pl.DataFrame:
    """The ``summaries`` contract; ``results`` are the runner's results for the prompts with messages."""
    answers = iter(results)
    rows = []
    for prompt in prompts:
        if prompt["messages"] is None:
            rows.append((prompt["task"], prompt["stay_id"], None, NOTHING_FOUND, "empty", None, 0))
            continue
        result = next(answers)
        summary = result.value["summary"].strip() if result.value else None
        status = "ok" if summary else "failed"
        rows.append((prompt["task"], prompt["stay_id"], prompt_sha256(prompt["messages"]), summary, status,
                     result.error, result.attempts))
    return pl.DataFrame(rows, schema=SUMMARY_COLUMNS, orient="row").sort("task", "stay_id")
