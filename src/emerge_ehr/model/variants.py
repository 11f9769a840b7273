"""The neural models of the comparison by name, and what each reads: no torch here, so that the workflow can read
it when it parses (which inputs a model's job needs, which summaries it reads).

A fusion model that reads the time series and text trains in stages or jointly as ``train.schedule`` says; the
same name with ``_joint`` appended always trains jointly, as the paper does, so that one run's table can put
the two side by side.
"""

from __future__ import annotations

SEQUENCE_MODELS = ("gru", "lstm", "transformer")

# name -> (modalities, fusion): EMERGE and its ablations; the *_knowledge ones read the knowledge text where the
# others read the LLM summary, so that the two sit side by side in the tables; the *_nodes ones read the retrieved
# nodes, one token each, where the *_knowledge ones read one vector of the whole knowledge text; the *_late ones
# (fusion "late") add a linear score of each text token to the GRU's logit, fitted after the GRU (late_fusion.py).
VARIANTS = {
    "emerge": dict(use_series=True, use_notes=True, use_summary=True, fusion="cross_attention"),
    "emerge_concat": dict(use_series=True, use_notes=True, use_summary=True, fusion="concat"),
    "ts_note": dict(use_series=True, use_notes=True, use_summary=False, fusion="cross_attention"),
    "ts_summary": dict(use_series=True, use_notes=False, use_summary=True, fusion="cross_attention"),
    "note_only": dict(use_series=False, use_notes=True, use_summary=False, fusion="concat"),
    "summary_only": dict(use_series=False, use_notes=False, use_summary=True, fusion="concat"),
    "emerge_knowledge": dict(use_series=True, use_notes=True, use_summary=False, use_knowledge=True,
                             fusion="cross_attention"),
    "ts_knowledge": dict(use_series=True, use_notes=False, use_summary=False, use_knowledge=True,
                         fusion="cross_attention"),
    "knowledge_only": dict(use_series=False, use_notes=False, use_summary=False, use_knowledge=True, fusion="concat"),
    "emerge_nodes": dict(use_series=True, use_notes=True, use_summary=False, use_nodes=True, fusion="cross_attention"),
    "ts_nodes": dict(use_series=True, use_notes=False, use_summary=False, use_nodes=True, fusion="cross_attention"),
    "ts_note_late": dict(use_series=True, use_notes=True, use_summary=False, fusion="late"),
    "ts_knowledge_late": dict(use_series=True, use_notes=False, use_summary=False, use_knowledge=True, fusion="late"),
    "ts_nodes_late": dict(use_series=True, use_notes=False, use_summary=False, use_nodes=True, fusion="late"),
    "emerge_late": dict(use_series=True, use_notes=True, use_summary=True, fusion="late"),
    "emerge_knowledge_late": dict(use_series=True, use_notes=True, use_summary=False, use_knowledge=True,
                                  fusion="late"),
}

# the model flag of each text kind
KIND_FLAGS = {"notes": "use_notes", "summary": "use_summary", "knowledge": "use_knowledge", "nodes": "use_nodes"}
JOINT_SUFFIX = "_joint"
SCHEDULED_FUSIONS = ("cross_attention", "concat")


def _can_stage(flags: dict) -> bool:
    """A fusion network over the series and some text: it has a GRU to train first."""
    return flags["fusion"] in SCHEDULED_FUSIONS and flags["use_series"] and any(flags.get(f) for f in KIND_FLAGS.values())


JOINT_MODELS = {f"{name}{JOINT_SUFFIX}": name for name, flags in VARIANTS.items() if _can_stage(flags)}
NEURAL_MODELS = (*SEQUENCE_MODELS, *VARIANTS, *JOINT_MODELS)


def variant(name: str, schedule: str = "staged") -> dict | None:
    """The flags of a fusion model (modalities, fusion, and ``schedule`` where it has a GRU to train first); None
    for a time-series baseline.

    >>> variant("emerge_knowledge", "staged")["schedule"], variant("emerge_knowledge_joint")["schedule"]
    ('staged', 'joint')
    >>> "schedule" in variant("note_only"), "schedule" in variant("emerge_late"), variant("gru")
    (False, False, None)
    """
    if name in JOINT_MODELS:
        return VARIANTS[JOINT_MODELS[name]] | {"schedule": "joint"}
    if name not in VARIANTS:
        return None
    return VARIANTS[name] | ({"schedule": schedule} if _can_stage(VARIANTS[name]) else {})


def text_kinds(name: str) -> list[str]:
    """The text kinds a model reads: none for the time-series baselines.

    >>> text_kinds("emerge_joint"), text_kinds("ts_nodes_late"), text_kinds("logreg")
    (['notes', 'summary'], ['nodes'], [])
    """
    flags = variant(name) or {}
    return [kind for kind, flag in KIND_FLAGS.items() if flags.get(flag)]


def summary_method(name: str) -> str | None:
    """Which summaries a model reads: the LLM's (``llm``), the knowledge text (``knowledge``), or none."""
    kinds = text_kinds(name)
    return "llm" if "summary" in kinds else "knowledge" if "knowledge" in kinds else None
