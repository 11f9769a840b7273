"""Which stays have text for a task, and whether a text model has any text to learn from.

A model whose every text input is empty for every training stay would be trained on masked, zero-filled
tokens: its predictions would say nothing about text, yet the tables would list it as if it had read some. It
is skipped with a reason instead. A model that has some of its text kinds trains on those, and the tables say
which it had. The counts of stays with text go into the metrics, so that a reader sees how much text a
comparison rests on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from emerge_ehr.model.variants import text_kinds, variant

# text kind -> what a stay must have, as the skip reason says it
TEXT_KINDS = {
    "notes": "a note usable for {task}",
    "summary": "a non-empty summary for {task}",
    "knowledge": "an abnormal finding or a matched condition for {task}",
    "nodes": "a retrieved knowledge-graph node for {task}",
}


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


def skip_reason(model: str, presence: Mapping[str, np.ndarray], training: np.ndarray, task: str) -> str | None:
    """Why ``model`` is not trained: no training stay has any of the text kinds it reads; None when one has.

    ``training`` marks the labelled training stays. A model that lacks some of its kinds runs on the others (the
    missing ones are masked, as for any stay without them): EMERGE on a dataset without notes reads the series and
    the summary, and ``read_inputs`` says so in the tables.

    >>> presence = {"notes": np.array([False, False, True]), "summary": np.array([True, True, True])}
    >>> skip_reason("note_only", presence, np.array([True, True, False]), "mortality")
    'no training stay has a note usable for mortality'
    >>> skip_reason("emerge", {**presence, "notes": np.zeros(3, bool)}, np.ones(3, bool), "mortality") is None
    True
    >>> skip_reason("emerge", {"notes": np.zeros(3, bool), "summary": np.zeros(3, bool)}, np.ones(3, bool),
    ...             "mortality")
    'no stay has a note usable for mortality; no stay has a non-empty summary for mortality'
    >>> skip_reason("ts_nodes", {**presence, "nodes": np.array([False, False, True])}, np.array([True, True, False]),
    ...             "mortality")
    'no training stay has a retrieved knowledge-graph node for mortality'
    """
    kinds = text_kinds(model)
    if not kinds or any(presence[kind][training].any() for kind in kinds):
        return None
    return "; ".join(f"no {'training stay' if presence[kind].any() else 'stay'} has "
                     f"{TEXT_KINDS[kind].format(task=task)}" for kind in kinds)


def missing_kinds(model: str, presence: Mapping[str, np.ndarray], training: np.ndarray) -> tuple[str, ...]:
    """The text kinds ``model`` reads that no training stay (``training``) has: never read, for any stay.

    >>> missing_kinds("emerge", {"notes": np.array([False, True]), "summary": np.ones(2, bool)},
    ...               np.array([True, False]))
    ('notes',)
    """
    return tuple(kind for kind in text_kinds(model) if not presence[kind][training].any())


INPUT_NAMES = {"notes": "notes", "summary": "summary", "knowledge": "knowledge text", "nodes": "nodes"}


def read_inputs(model: str, presence: Mapping[str, np.ndarray], training: np.ndarray) -> str | None:
    """What a trained model read when no training stay had some of its text kinds, for the tables; None when it
    had them all.

    >>> presence = {"notes": np.zeros(3, bool), "summary": np.ones(3, bool)}
    >>> read_inputs("emerge", presence, np.ones(3, bool))
    'no notes: series + summary'
    >>> read_inputs("ts_summary", presence, np.ones(3, bool)) is None
    True
    """
    kinds = text_kinds(model)
    missing = missing_kinds(model, presence, training)
    if not missing:
        return None
    used = (["series"] if (variant(model) or {}).get("use_series") else []) + [
        INPUT_NAMES[kind] for kind in kinds if kind not in missing]
    return f"no {' or '.join(INPUT_NAMES[kind] for kind in missing)}: {' + '.join(used)}"


def unreadable_reason(reads_series: bool, kinds: tuple[str, ...], presence: Mapping[str, np.ndarray]) -> str | None:
    """Why a model cannot predict the stays of ``presence``: it reads no time series, and none of the stays has
    any of the text ``kinds`` it reads (its predictions would all be one constant); None when it can.

    >>> unreadable_reason(False, ("notes",), {"notes": np.zeros(57, bool)})
    'the model reads notes only, and none of the 57 stays has any'
    >>> unreadable_reason(True, ("notes",), {"notes": np.zeros(57, bool)}) is None
    True
    """
    if reads_series or any(presence[kind].any() for kind in kinds):
        return None
    stays = len(next(iter(presence.values()))) if presence else 0
    read = " and ".join(INPUT_NAMES[kind] for kind in kinds) or "no text"
    return f"the model reads {read} only, and none of the {stays} stays has any"
