"""The retrieved knowledge as plain text, without an LLM: a deterministic alternative to the LLM summary.

Per stay and task, from its ``context.parquet`` row: the abnormal findings, the matched conditions with the
first sentence of their definition (at most ``DEFINITION_WORDS`` words), then the relation triples, in that
order of importance. The text is cut to what the text encoder reads, measured with its own tokenizer, at a
whole finding, condition or triple: the stored text is exactly what the model sees, and the encoder never cuts
one mid-way. Same context, same text: the embedding cache makes a rerun free.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

KNOWLEDGE_SCHEMA = {
    "task": pl.String, "stay_id": pl.Int64, "text": pl.String, "status": pl.String, "tokens": pl.Int32,
    "left_out": pl.Int32,
}
NOTHING_FOUND = "No abnormal findings, and no conditions matched to the knowledge graph."
SECTIONS = ("Abnormal findings", "Conditions", "Relations")
# Words kept of each definition: one long definition must not take the whole budget (all-MiniLM-L6-v2 reads
# 256 tokens) from the conditions and relations after it.
DEFINITION_WORDS = 24

_FIRST_SENTENCE = re.compile(r"^.*?[.!?](?=\s|$)")


def condition(name: str, definition_line: str) -> str:
    """``name (first sentence of its definition)``; the name alone where the node has no definition.

    >>> condition("Sepsis", "Sepsis: A response to infection. It may be fatal.")
    'Sepsis (A response to infection)'
    >>> condition("Fever", "Fever")
    'Fever'
    >>> long = condition("Stroke", "Stroke: " + "word " * 30)
    >>> long.count("word") == DEFINITION_WORDS and long.endswith("word ...)")
    True
    """
    prefix = f"{name}: "
    if not definition_line.startswith(prefix):
        return name
    definition = definition_line.removeprefix(prefix)
    first = _FIRST_SENTENCE.match(definition)
    words = (first.group(0) if first else definition).rstrip(".!?").split()
    kept = " ".join(words[:DEFINITION_WORDS]) + (" ..." if len(words) > DEFINITION_WORDS else "")
    return f"{name} ({kept})"


def render(sections: list[tuple[str, list[str]]]) -> str:
    """One line per non-empty section: ``Title: item; item.``"""
    return "\n".join(f"{title}: {'; '.join(items)}." for title, items in sections if items)


def knowledge_text(
    findings: list[str], node_names: list[str], definitions: str, triples: str,
    count_tokens: Callable[[str], int], max_tokens: int,
) -> tuple[str, int]:
    """The text of one stay and how many items were left out to keep it within ``max_tokens``.

    Items are kept in order (findings, conditions, triples) up to the longest prefix that fits, so an item
    is never kept while an earlier, more important one is dropped.

    >>> words = lambda text: len(text.split())
    >>> args = (["heart rate too high"], ["Sepsis"], "Sepsis: A response to infection. Often fatal.",
    ...         "(Sepsis, phenotype present, Fever)")
    >>> print(knowledge_text(*args, words, 100)[0])
    Abnormal findings: heart rate too high.
    Conditions: Sepsis (A response to infection).
    Relations: (Sepsis, phenotype present, Fever).
    >>> knowledge_text(*args, words, 12)
    ('Abnormal findings: heart rate too high.\\nConditions: Sepsis (A response to infection).', 1)
    >>> knowledge_text([], [], "", "", words, 100)
    ('No abnormal findings, and no conditions matched to the knowledge graph.', 0)
    """
    items = [
        (SECTIONS[0], findings),
        (SECTIONS[1], [condition(name, line) for name, line in zip(node_names, definitions.splitlines())]),
        (SECTIONS[2], triples.splitlines()),
    ]
    flat = [(title, item) for title, section in items for item in section]
    if not flat:
        return NOTHING_FOUND, 0

    def first(n: int) -> str:
        return render([(title, [item for t, item in flat[:n] if t == title]) for title in SECTIONS])

    # Binary search for the longest prefix that fits: the token count grows with the prefix.
    low, high = 0, len(flat)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(first(middle)) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return first(low), len(flat) - low


def knowledge_table(context: pl.DataFrame, count_tokens: Callable[[str], int], max_tokens: int) -> pl.DataFrame:
    """The ``knowledge`` contract: one row per ``context`` row (task and stay), status ``ok`` or ``empty``."""
    rows = []
    for row in context.iter_rows(named=True):
        text, left_out = knowledge_text(row["abnormal_features"], row["node_names"], row["definitions"],
                                        row["triples"], count_tokens, max_tokens)
        status = "empty" if text == NOTHING_FOUND else "ok"
        rows.append((row["task"], row["stay_id"], text, status, count_tokens(text), left_out))
    return pl.DataFrame(rows, schema=KNOWLEDGE_SCHEMA, orient="row").sort("task", "stay_id")
