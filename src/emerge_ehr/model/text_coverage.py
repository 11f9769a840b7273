"""Which stays have text for a task, and whether a text model has any text to learn from.

A model whose text input is empty for every training stay would be trained on masked, zero-filled tokens:
its predictions would say nothing about text, yet the tables would list it as if it had read some. It is
skipped with a reason instead. The counts of stays with text go into the metrics, so that a reader sees how
much text a comparison rests on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# text kind -> what a stay must have, as the skip reason says it
TEXT_KINDS = {
    "notes": "a note usable for {task}",
    "summary": "a non-empty summary for {task}",
    "knowledge": "an abnormal finding or a matched condition for {task}",
    "nodes": "a retrieved knowledge-graph node for {task}",
}
# text kind -> the model flag that reads it (emerge.VARIANTS)
KIND_FLAGS = {"notes": "use_notes", "summary": "use_summary", "knowledge": "use_knowledge", "nodes": "use_nodes"}


def text_presence(embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per stay (rows of ``embeddings/{task}.npz``): has a note chunk; has an LLM summary, and a knowledge text,
    written from findings (the fixed nothing-found sentence of either counts as no text); has a node token."""
    return {"notes": embeddings["notes_mask"].any(axis=1), "summary": embeddings["summary_has_knowledge"],
            "knowledge": embeddings["knowledge_has_findings"], "nodes": embeddings["nodes_mask"].any(axis=1)}


def text_coverage(presence: Mapping[str, np.ndarray]) -> dict:
    """Cohort stays, and for each text kind the number and share of them that have it.

    >>> text_coverage({"notes": np.array([True, False, False, False]), "summary": np.ones(4, bool)})
    {'stays': 4, 'notes': {'stays': 1, 'share': 0.25}, 'summary': {'stays': 4, 'share': 1.0}}
    """
    stays = len(presence["notes"])
    counts = {kind: {"stays": int(has.sum()), "share": float(has.mean()) if stays else 0.0}
              for kind, has in presence.items()}
    return {"stays": stays} | counts


def model_text_kinds(model: str) -> list[str]:
    """The text kinds a model reads: none for the time-series baselines."""
    from emerge_ehr.model.emerge import VARIANTS

    variant = VARIANTS.get(model, {})
    return [kind for kind, flag in KIND_FLAGS.items() if variant.get(flag)]


def skip_reason(model: str, presence: Mapping[str, np.ndarray], training: np.ndarray, task: str) -> str | None:
    """Why ``model`` is not trained: a text kind it reads that no training stay has; None when it can be.

    ``training`` marks the labelled training stays. A model reading several kinds is skipped when any one is
    missing: without it the model is another row of the comparison (EMERGE without notes is ``ts_summary``).

    >>> presence = {"notes": np.array([False, False, True]), "summary": np.array([True, True, True])}
    >>> skip_reason("note_only", presence, np.array([True, True, False]), "mortality")
    'no training stay has a note usable for mortality'
    >>> skip_reason("emerge", {**presence, "notes": np.zeros(3, bool)}, np.ones(3, bool), "mortality")
    'no stay has a note usable for mortality'
    >>> skip_reason("ts_summary", presence, np.array([True, True, False]), "mortality") is None
    True
    >>> skip_reason("emerge_knowledge", {**presence, "knowledge": np.zeros(3, bool)}, np.ones(3, bool), "mortality")
    'no stay has an abnormal finding or a matched condition for mortality'
    >>> skip_reason("ts_nodes", {**presence, "nodes": np.array([False, False, True])}, np.array([True, True, False]),
    ...             "mortality")
    'no training stay has a retrieved knowledge-graph node for mortality'
    """
    reasons = []
    for kind in model_text_kinds(model):
        if not presence[kind][training].any():
            which = "training stay" if presence[kind].any() else "stay"
            reasons.append(f"no {which} has {TEXT_KINDS[kind].format(task=task)}")
    return "; ".join(reasons) or None
