"""Extraction quality against planted conditions, per method and for the union."""

from __future__ import annotations

import polars as pl

from emerge_ehr.evaluate.entities import condition_keys, extraction_quality


def test_precision_and_recall_per_method_and_union():
    keys = condition_keys({"CHF": "congestive heart failure", "PNA": "pneumonia"})
    assert keys["chf"] == keys["congestive heart failure"] == "congestive heart failure"
    truth = pl.DataFrame({
        "stay_id": [1, 2],
        "conditions": [["congestive heart failure", "pneumonia"], ["sepsis"]],
        "mentions": [["CHF"], ["sepsis"]],
    })
    entities = pl.DataFrame({
        "stay_id": [1, 1, 1, 2, 2],
        "entity": ["congestive heart failure", "pneumonia", "sepsis", "sepsis", "chest pain"],
        "method": ["lexicon", "llm", "lexicon", "llm", "llm"],
        "negated": [False, False, True, False, False],
        "family": [False, False, False, False, False],
    })
    rows = {r["method"]: r for r in extraction_quality(entities, truth, pl.Series([1, 2]), keys)}
    # lexicon: CHF right, sepsis negated (not the patient's) -> 1 extracted, 1 correct of 3 planted.
    assert (rows["lexicon"]["extracted"], rows["lexicon"]["true_positives"]) == (1, 1)
    # llm: pneumonia and sepsis right; "chest pain" is no generator condition and is ignored.
    assert (rows["llm"]["extracted"], rows["llm"]["true_positives"]) == (2, 2)
    assert rows["union"]["recall"] == 1.0 and rows["union"]["precision"] == 1.0
    assert rows["lexicon"]["recall_of_mentioned"] == 0.5  # mentioned: CHF (stay 1), sepsis (stay 2)
