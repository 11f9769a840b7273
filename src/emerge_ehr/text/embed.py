"""Text tokens of each stay for the fusion model: note chunks usable for the task, the LLM summary, the
knowledge text (the retrieved knowledge written out without an LLM), and the retrieved knowledge-graph nodes,
one token per node (its definition line), so that a node is not diluted among the rest of the knowledge text.

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
EMBEDDING_ARRAYS = ("notes", "notes_mask", "summary", "summary_mask", "summary_has_knowledge", "knowledge",
                    "knowledge_mask", "knowledge_has_findings", "nodes", "nodes_mask")


def note_chunks(notes: pl.DataFrame, task: str, chunk_words: int, max_chunks: int) -> pl.DataFrame:
    """stay_id, slot, text: the last ``max_chunks`` chunks of the stay's notes usable for ``task``.

    >>> notes = pl.DataFrame({"stay_id": [1, 1], "note_id": ["a", "b"], "charttime": [1, 2],
    ...     "text": ["w1 w2 w3", "w4 w5"], "mortality": [True, True]})
    >>> note_chunks(notes, "mortality", 2, 2).rows()
    [(1, 0, 'w3'), (1, 1, 'w4 w5')]
    """
    # Newest note first, each stay only until it has its chunks: the older notes of full MIMIC-IV's long stays are
    # never split (all of them, split, held 4.5 GB of strings).
    usable = notes.filter(pl.col(task)).sort("stay_id", "charttime", "note_id", descending=[False, True, True])
    per_stay: dict[int, list[str]] = {}
    for stay_id, text in usable.select("stay_id", "text").iter_rows():
        have = per_stay.setdefault(stay_id, [])
        if len(have) < max_chunks:
            words = text.split()
            chunks = [" ".join(words[start : start + chunk_words]) for start in range(0, len(words), chunk_words)]
            have[:0] = chunks[len(have) - max_chunks:]  # this note's last chunks, before the newer notes' ones
    rows = [(stay_id, slot, text) for stay_id, texts in per_stay.items() for slot, text in enumerate(texts)]
    return pl.DataFrame(rows, schema={"stay_id": pl.Int64, "slot": pl.Int64, "text": pl.String}, orient="row")


def node_lines(context: pl.DataFrame, task: str, max_nodes: int) -> pl.DataFrame:
    """stay_id, slot, text: the definition line (``name: definition description``) of each node retrieved for the
    stay and ``task`` (``context``: the retrieve stage's contract), in rank order, at most ``max_nodes``.

    A stay with an empty context has no lines; the lines of ``definitions`` match ``node_names`` one to one.

    >>> context = pl.DataFrame({"task": ["mortality", "mortality", "readmission"], "stay_id": [1, 2, 1],
    ...     "node_names": [["Sepsis", "AKI"], [], ["COPD"]],
    ...     "definitions": ["Sepsis: an infection.\\nAKI", "", "COPD"]})
    >>> node_lines(context, "mortality", 10).rows()
    [(1, 0, 'Sepsis: an infection.'), (1, 1, 'AKI')]
    """
    rows = []
    usable = context.filter(pl.col("task") == task).select("stay_id", "node_names", "definitions")
    for stay_id, names, definitions in usable.iter_rows():
        lines = definitions.split("\n") if definitions else []
        if len(lines) != len(names):
            raise ValueError(f"stay {stay_id} ({task}): {len(lines)} definition lines for {len(names)} nodes")
        rows += [(stay_id, slot, line) for slot, line in enumerate(lines[:max_nodes])]
    return pl.DataFrame(rows, schema={"stay_id": pl.Int64, "slot": pl.Int64, "text": pl.String}, orient="row")


def slot_arrays(
    stays: np.ndarray, slots: pl.DataFrame, vectors: np.ndarray, n_slots: int, dimension: int
) -> tuple[np.ndarray, np.ndarray]:
    """Several texts per stay (``slots``: stay_id, slot; rows of ``vectors``) in ``stays`` order: the vectors
    (n, n_slots, D) and the mask (n, n_slots)."""
    row_of = {int(s): i for i, s in enumerate(stays)}
    embedded = np.zeros((len(stays), n_slots, dimension), dtype=np.float32)
    mask = np.zeros((len(stays), n_slots), dtype=bool)
    for (stay_id, slot), vector in zip(slots.select("stay_id", "slot").iter_rows(), vectors):
        embedded[row_of[stay_id], slot] = vector
        mask[row_of[stay_id], slot] = True
    return embedded, mask


def stay_text_arrays(
    stays: np.ndarray, texts: pl.DataFrame, vectors: np.ndarray, dimension: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One text per stay (``texts``: stay_id, status; rows of ``vectors``) in ``stays`` order: the vectors
    (n, D), the mask (n,), and where the text was written from findings (status ``ok``, n,).

    Status ``empty`` is the fixed sentence saying nothing was found: a token for the model (the mask), yet no
    knowledge, so that a model reading that text alone is not trained on it (see ``text_coverage``).
    """
    row_of = {int(s): i for i, s in enumerate(stays)}
    embedded = np.zeros((len(stays), dimension), dtype=np.float32)
    mask = np.zeros(len(stays), dtype=bool)
    from_findings = np.zeros(len(stays), dtype=bool)
    for (stay_id, status), vector in zip(texts.select("stay_id", "status").iter_rows(), vectors):
        embedded[row_of[stay_id]] = vector
        mask[row_of[stay_id]] = True
        from_findings[row_of[stay_id]] = status == "ok"
    return embedded, mask, from_findings


def text_arrays(
    stays: np.ndarray, chunks: pl.DataFrame, chunk_vectors: np.ndarray, summaries: pl.DataFrame,
    summary_vectors: np.ndarray, knowledge: pl.DataFrame, knowledge_vectors: np.ndarray, nodes: pl.DataFrame,
    node_vectors: np.ndarray, max_chunks: int, max_nodes: int, dimension: int,
) -> dict[str, np.ndarray]:
    """The ``EMBEDDING_ARRAYS``, rows in ``stays`` order: notes (n, K, D) and notes_mask (n, K); for the LLM
    summary and the knowledge text each (``summaries``, ``knowledge``: stay_id, status of the stays that have
    one) the vectors (n, D), the mask and whether it was written from findings (n,), see ``stay_text_arrays``;
    nodes (n, max_nodes, D) and nodes_mask (n, max_nodes) from ``node_lines``.
    """
    arrays = {}
    arrays["notes"], arrays["notes_mask"] = slot_arrays(stays, chunks, chunk_vectors, max_chunks, dimension)
    arrays["summary"], arrays["summary_mask"], arrays["summary_has_knowledge"] = stay_text_arrays(
        stays, summaries, summary_vectors, dimension)
    arrays["knowledge"], arrays["knowledge_mask"], arrays["knowledge_has_findings"] = stay_text_arrays(
        stays, knowledge, knowledge_vectors, dimension)
    arrays["nodes"], arrays["nodes_mask"] = slot_arrays(stays, nodes, node_vectors, max_nodes, dimension)
    return arrays
