"""Lexicon entity extraction: matching, abbreviations, negation, family history, the entities table."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from emerge_ehr.text.lexicon import (
    ENTITY_SCHEMA,
    Lexicon,
    LexiconSettings,
    extract_entities,
    load_abbreviations,
    normalise,
)

REPO = Path(__file__).resolve().parents[1]
MTS_DIALOG = REPO.parent / "shared" / "data" / "clinical-notes" / "mts-dialog"

TERMS = {
    "Pneumonia": [],
    "Bronchopneumonia": [],
    "Heart failure, unspecified": ["Heart failure"],
    "Congestive heart failure": [],
    "Acute kidney injury": [],
    "Kidney injury": [],
    "Breast cancer": [],
    "Chest pain": [],
    "Pain": [],
    "Fever": ["Pyrexia"],
    "Sepsis": [],
    "Diabetes mellitus": [],
    "Hypertension": [],
    "Asthma": [],
    "Depression": [],
    "Shortness of breath": [],
    "Cough": [],
    "Headache": [],
    "Nausea": [],
    "Vomiting": [],
    "Stroke": [],
    "AIDS": [],
    "Ear": [],  # shorter than min_term_length
}


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    terms = pl.DataFrame({"name": list(TERMS), "synonyms": list(TERMS.values())},
                         schema={"name": pl.String, "synonyms": pl.List(pl.String)})
    return Lexicon.from_terms(terms, load_abbreviations(REPO / "config" / "abbreviations.yaml"))


def found(lexicon: Lexicon, text: str) -> dict[str, tuple[bool, bool]]:
    """entity -> (negated, family) of each mention."""
    return {m.entity: (m.negated, m.family) for m in lexicon.find(text)}


def test_normalise_folds_case_and_punctuation():
    assert normalise("  Heart-Failure,\n unspecified ") == "heart failure unspecified"
    assert normalise("r/o") == "r o"


def test_longest_match_and_word_boundaries(lexicon):
    mentions = lexicon.find("Bronchopneumonia and acute kidney injury; earache.")
    assert [m.entity for m in mentions] == ["bronchopneumonia", "acute kidney injury"]
    assert mentions[1].surface == "acute kidney injury"
    assert found(lexicon, "pneumonias") == {}  # no match inside a word
    assert found(lexicon, "pain in the ear") == {}  # stop term and a too-short term


def test_case_and_punctuation_folding(lexicon):
    mentions = lexicon.find("HEART-FAILURE with Pyrexia")
    assert [(m.surface, m.entity) for m in mentions] == [("HEART-FAILURE", "heart failure"),
                                                         ("Pyrexia", "pyrexia")]
    assert found(lexicon, "heart. Failure to thrive") == {}  # no match across a sentence break


def test_abbreviations_are_case_sensitive(lexicon):
    assert found(lexicon, "Hx of CHF and AF.") == {"congestive heart failure": (False, False),
                                                  "atrial fibrillation": (False, False)}
    assert found(lexicon, "chf, af, leaf") == {}
    assert found(lexicon, "new AFib") == {"atrial fibrillation": (False, False)}
    assert found(lexicon, "C. diff colitis") == {"clostridioides difficile infection": (False, False)}
    assert found(lexicon, "T2DM and HTN") == {"type 2 diabetes mellitus": (False, False),
                                              "hypertension": (False, False)}
    assert found(lexicon, "hearing aids") == {} and found(lexicon, "AIDS") == {"aids": (False, False)}


@pytest.mark.parametrize("text, expected", [
    ("No evidence of pneumonia.", {"pneumonia": (True, False)}),
    ("Pneumonia.", {"pneumonia": (False, False)}),
    ("Denies chest pain.", {"chest pain": (True, False)}),
    ("Pneumonia was ruled out.", {"pneumonia": (True, False)}),
    ("r/o sepsis - ruled out.", {"sepsis": (True, False)}),
    ("Negative for PE.", {"pulmonary embolism": (True, False)}),
    ("No fever but pneumonia.", {"fever": (True, False), "pneumonia": (False, False)}),
    ("No fever. Pneumonia on CT.", {"fever": (True, False), "pneumonia": (False, False)}),
    ("No fever\nPneumonia", {"fever": (True, False), "pneumonia": (False, False)}),
    ("Denies fever or chills, nausea or vomiting.", {"fever": (True, False), "nausea": (True, False),
                                                    "vomiting": (True, False)}),
    ("No one two three four five six seven pneumonia.", {"pneumonia": (False, False)}),  # beyond the window
    ("Low suspicion for AKI; not treated.", {"acute kidney injury": (True, False)}),
    ("Pneumonia not ruled out.", {"pneumonia": (False, False)}),  # pseudo-negation
    ("SQ heparin for DVT ppx.", {"deep vein thrombosis": (True, False)}),
])
def test_negation(lexicon, text, expected):
    assert found(lexicon, text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Mother had breast cancer.", {"breast cancer": (False, True)}),
    ("Family history of CAD.", {"coronary artery disease": (False, True)}),
    ("Her father has diabetes mellitus and hypertension.", {"diabetes mellitus": (False, True),
                                                            "hypertension": (False, True)}),
    ("Asthma in her mother.", {"asthma": (False, True)}),
    ("No family history of stroke.", {"stroke": (True, True)}),
    ("Mother had breast cancer. Patient has asthma.", {"breast cancer": (False, True),
                                                       "asthma": (False, False)}),
    ("Daughter at bedside. Asthma.", {"asthma": (False, False)}),
])
def test_family(lexicon, text, expected):
    assert found(lexicon, text) == expected


def test_family_history_section(lexicon):
    note = ("Past Medical History:\n- CHF\n\nFamily History:\nSister with stroke.\nHypertension\n\n"
            "Brief Hospital Course:\n# stroke: resolved.\nFHx: asthma\nPneumonia treated.\n"
            "Mother: depression\n")
    mentions = [(m.surface, m.family) for m in lexicon.find(note)]
    assert mentions == [("CHF", False), ("stroke", True), ("Hypertension", True), ("stroke", False),
                        ("asthma", True), ("Pneumonia", False), ("depression", True)]


def test_settings_window_and_min_length():
    terms = pl.DataFrame({"name": ["Fevers", "Cough"], "synonyms": [[], []]},
                         schema={"name": pl.String, "synonyms": pl.List(pl.String)})
    lexicon = Lexicon.from_terms(terms, {}, LexiconSettings(window_tokens=1, min_term_length=6))
    mentions = lexicon.find("no high fevers. no fevers. cough")
    assert [(m.entity, m.negated) for m in mentions] == [("fevers", False), ("fevers", True)]


def test_abbreviation_keys_must_be_strings(tmp_path):
    path = tmp_path / "abbr.yaml"
    path.write_text("NO: nitric oxide\n")  # YAML 1.1 reads an unquoted NO as False
    with pytest.raises(ValueError, match="must be strings"):
        load_abbreviations(path)


def test_extract_entities_counts_and_schema(lexicon):
    notes = pl.DataFrame({
        "stay_id": [2, 1, 1], "note_id": ["b", "a2", "a1"],
        "category": ["Radiology"] * 3,
        "text": ["Asthma.", "CHF. CHF exacerbation. Heart failure. No fever.", None],
    }, schema_overrides={"stay_id": pl.Int64})
    out = extract_entities(notes, lexicon)
    assert out.schema == pl.Schema(ENTITY_SCHEMA)
    assert out.rows() == [
        (1, "a2", "congestive heart failure", 2, "lexicon", False, False),
        (1, "a2", "fever", 1, "lexicon", True, False),
        (1, "a2", "heart failure", 1, "lexicon", False, False),
        (2, "b", "asthma", 1, "lexicon", False, False),
    ]


def test_extract_entities_empty(lexicon):
    notes = pl.DataFrame(schema={"stay_id": pl.Int64, "note_id": pl.String, "text": pl.String})
    out = extract_entities(notes, lexicon)
    assert out.is_empty() and out.schema == pl.Schema(ENTITY_SCHEMA)


def test_a_240_kb_note_keeps_every_mention_and_its_flags(lexicon):
    sentence = "Pt denies chest pain. History of CHF. No evidence of pneumonia. Mother had breast cancer. Tolerating PO.\n"
    repeats = 240_000 // len(sentence)
    notes = pl.DataFrame({"stay_id": [1], "note_id": ["long"], "text": [sentence * repeats]})
    rows = {row[2]: row[3:] for row in extract_entities(notes, lexicon).rows()}
    assert rows == {
        "chest pain": (repeats, "lexicon", True, False),
        "congestive heart failure": (repeats, "lexicon", False, False),
        "pneumonia": (repeats, "lexicon", True, False),
        "breast cancer": (repeats, "lexicon", False, True),
    }


def test_mts_dialog_sections(lexicon):
    files = sorted(MTS_DIALOG.glob("*.csv"))
    if not files:
        pytest.skip(f"MTS-Dialog not found at {MTS_DIALOG} (see ../shared/data/README.md)")
    sections = pl.concat([pl.read_csv(f).select("section_header", "section_text") for f in files])
    texts = sections["section_text"].to_list()
    started = time.perf_counter()
    mentions = [lexicon.find(t) for t in texts]
    rate = len(texts) / (time.perf_counter() - started)
    assert rate > 500, f"{rate:.0f} sections/s"
    entities = {m.entity for ms in mentions for m in ms}
    assert {"hypertension", "diabetes mellitus", "asthma", "chest pain", "fever"} <= entities
    for header, ms in zip(sections["section_header"], mentions):
        for m in ms:
            assert m.surface and normalise(m.surface)  # spans point at text
    ros = [m for h, ms in zip(sections["section_header"], mentions) if h == "ROS" for m in ms]
    assert sum(m.negated for m in ros) / len(ros) > 0.5  # review of systems is mostly pertinent negatives
    fam = [m for h, ms in zip(sections["section_header"], mentions) if h == "FAM/SOCHX" for m in ms]
    assert sum(m.family for m in fam) / len(fam) > 0.3


def test_the_lexicon_stage_reads_notes_in_batches_and_gives_the_table_of_one_batch(tmp_path, monkeypatch):
    """Full MIMIC-IV's 1.4 million cohort notes are read a batch at a time (memory); the entity table is the same."""
    from emerge_ehr import knowledge

    pl.DataFrame({"index": [0, 1], "name": ["pneumonia", "sepsis"], "type": ["disease", "disease"],
                  "synonyms": [["lung infection"], []]}).write_parquet(tmp_path / "nodes.parquet")
    texts = ["CXR shows pneumonia.", "No sepsis. Pneumonia improving.", "Family history of sepsis.",
             "Lung infection, pneumonia again.", "Unremarkable.", "sepsis, sepsis"]
    pl.DataFrame({"stay_id": [1, 1, 2, 2, 2, 3], "note_id": ["b", "a", "c", "e", "d", "f"],
                  "text": texts}).write_parquet(tmp_path / "notes.parquet")
    abbreviations = Path(__file__).resolve().parents[1] / "config" / "abbreviations.yaml"
    tables = []
    for batch in (1000, 2):
        monkeypatch.setattr(knowledge, "NOTES_PER_BATCH", batch)
        knowledge.lexicon_entities(str(tmp_path / "notes.parquet"), str(tmp_path / "nodes.parquet"), str(abbreviations),
                                   ["disease"], str(tmp_path / f"entities{batch}.parquet"))
        tables.append(pl.read_parquet(tmp_path / f"entities{batch}.parquet"))
    assert tables[0].height >= 5 and tables[1].equals(tables[0])
    assert set(tables[0].get_column("note_id")) == {"a", "b", "c", "e", "f"}  # d mentions nothing
