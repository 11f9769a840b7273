"""Text tokens of each stay for the fusion model: note chunks usable for the task, and the LLM summary.

Notes are split into chunks of words that fit the encoder; each stay keeps its most recent ``max_chunks``
chunks (those closest to the prediction time). Arrays follow the cohort's row order, with masks marking
empty slots, so that a stay without notes (or without a summary) is masked rather than zero-filled. A dataset
without notes gives all-masked note slots, never an error.
"""

from __future__ import annotations

import numpy as np
import polars as pl


# The arrays of ``embeddings/{task}.npz``; the embed rule's params carry them, so that a change of the file's
# contents reruns the job instead of leaving files that lack an array.
EMBEDDING_ARRAYS = ("notes", "notes_mask", "summary", "summary_mask", "summary_has_knowledge")


def note_chunks(notes: pl.DataFrame, task: str, chunk_words: int, max_chunks: int) -> pl.DataFrame:
    """stay_id, slot, text: the last ``max_chunks`` chunks of the stay's notes usable for ``task``.

    >>> notes = pl.DataFrame({"stay_id": [1, 1], "note_id": ["a", "b"], "charttime": [1, 2],
    ...     "text": ["w1 w2 w3", "w4 w5"], "mortality": [True, True]})
    >>> note_chunks(notes, "mortality", 2, 2).rows()
    [(1, 0, 'w3'), (1, 1, 'w4 w5')]
    """
    usable = notes.filter(pl.col(task)).sort("stay_id", "charttime", "note_id")
    per_stay: dict[int, list[str]] = {}
    for stay_id, text in usable.select("stay_id", "text").iter_rows():
        words = text.split()
        per_stay.setdefault(stay_id, []).extend(
            " ".join(words[start : start + chunk_words]) for start in range(0, len(words), chunk_words)
        )
    rows = [(stay_id, slot, text) for stay_id, texts in per_stay.items()
            for slot, text in enumerate(texts[-max_chunks:])]
    return pl.DataFrame(rows, schema={"stay_id": pl.Int64, "slot": pl.Int64, "text": pl.String}, orient="row")


def text_arrays(
    stays: np.ndarray, chunks: pl.DataFrame, chunk_vectors: np.ndarray, summaries: pl.DataFrame,
    summary_vectors: np.ndarray, max_chunks: int, dimension: int,
) -> dict[str, np.ndarray]:
    """notes (n, K, D), notes_mask (n, K), summary (n, D), summary_mask (n,), summary_has_knowledge (n,).

    Rows in ``stays`` order. ``summaries`` (stay_id, status) are those with a summary text. A summary with status
    ``empty`` is the fixed sentence saying nothing was found: it is a token for the model (``summary_mask``), yet
    no knowledge (``summary_has_knowledge``), so that a model reading summaries alone is not trained on it.
    """
    row_of = {int(s): i for i, s in enumerate(stays)}
    notes = np.zeros((len(stays), max_chunks, dimension), dtype=np.float32)
    notes_mask = np.zeros((len(stays), max_chunks), dtype=bool)
    for (stay_id, slot), vector in zip(chunks.select("stay_id", "slot").iter_rows(), chunk_vectors):
        notes[row_of[stay_id], slot] = vector
        notes_mask[row_of[stay_id], slot] = True
    summary = np.zeros((len(stays), dimension), dtype=np.float32)
    summary_mask = np.zeros(len(stays), dtype=bool)
    summary_has_knowledge = np.zeros(len(stays), dtype=bool)
    for (stay_id, status), vector in zip(summaries.select("stay_id", "status").iter_rows(), summary_vectors):
        summary[row_of[stay_id]] = vector
        summary_mask[row_of[stay_id]] = True
        summary_has_knowledge[row_of[stay_id]] = status == "ok"  # written by the LLM from retrieved knowledge
    return {"notes": notes, "notes_mask": notes_mask, "summary": summary, "summary_mask": summary_mask,
            "summary_has_knowledge": summary_has_knowledge}
