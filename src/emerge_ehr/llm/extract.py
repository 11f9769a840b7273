"""Disease-entity extraction from notes with an LLM, and the refinement of its answers (EMERGE section 3).

The prompt asks for the diseases, syndromes and abnormal findings the patient has, with one worked
example, as JSON. Long notes are split into chunks of words. Refinement keeps an entity only where it
occurs in the note (word boundaries, case and punctuation folded), normalises and de-duplicates it, counts
its mentions and flags negated and family-history mentions with the lexicon's NegEx/ConText rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from emerge_ehr.llm.backends import Request
from emerge_ehr.text.lexicon import ENTITY_SCHEMA, Lexicon, LexiconSettings, extract_entities

ENTITY_ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {"type": "string", "minLength": 2, "maxLength": 60},
            "maxItems": 12,
        }
    },
    "required": ["entities"],
    "additionalProperties": False,
}

SYSTEM = (
    "You are a careful clinical information extraction system. You read one clinical note and list the"
    " diseases, syndromes and abnormal findings that the note says the patient has."
)
INSTRUCTION = (
    "List the diseases, syndromes and abnormal findings of this patient named in the note below. Use the words"
    " of the note. Leave out conditions that are denied or ruled out, conditions of family members, drugs,"
    " procedures and body parts. Answer only with JSON of the form {\"entities\": [...]}.\n\nNote:\n"
)
EXAMPLE_NOTE = (
    "72 y/o woman with CHF and type 2 diabetes admitted with community acquired pneumonia. Chest x-ray: right"
    " lower lobe consolidation. No evidence of pulmonary embolism. Mother had breast cancer."
)
EXAMPLE_ANSWER = '{"entities": ["CHF", "type 2 diabetes", "community acquired pneumonia", "consolidation"]}'


@dataclass(frozen=True)
class ExtractionSettings:
    chunk_words: int = 2000
    max_chunks: int = 4
    max_tokens: int = 192  # the schema's longest list fits; 96 cut 11 % of answers mid-JSON


def words_per_chunk(settings: ExtractionSettings, max_model_len: int) -> int:
    """The chunk size in words that fits the model's context with the prompt and the answer.

    About 1.5 tokens per word of clinical text; 350 tokens for the instruction and the worked example.
    """
    room = int((max_model_len - settings.max_tokens - 350) / 1.5)
    return max(50, min(settings.chunk_words, room))


def chunks(text: str, size: int, limit: int) -> list[str]:
    """The note's words in chunks of ``size`` (at most ``limit`` chunks, from the start of the note).

    >>> chunks("a b c d e", 2, 2)
    ['a b', 'c d']
    """
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)][:limit]


def extraction_messages(chunk: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": INSTRUCTION + EXAMPLE_NOTE},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": INSTRUCTION + chunk},
    ]


def extraction_requests(notes: pl.DataFrame, settings: ExtractionSettings, max_model_len: int) -> tuple[list[Request], list[int]]:
    """One request per note chunk, and for each request the row of its note."""
    size = words_per_chunk(settings, max_model_len)
    requests, rows = [], []
    for row, text in enumerate(notes.get_column("text")):
        for chunk in chunks(text or "", size, settings.max_chunks):
            requests.append(Request(extraction_messages(chunk), ENTITY_ANSWER_SCHEMA, settings.max_tokens))
            rows.append(row)
    return requests, rows


def refine(notes: pl.DataFrame, answers: dict[int, list[str]], abbreviations: dict[str, str]) -> pl.DataFrame:
    """The ``entities`` contract (method ``llm``) from each note's raw LLM entities.

    Entities absent from the note text disappear (a small model invents some); mentions are counted in
    the note, so entities come out ordered by frequency, with negation and family flags.
    """
    frames = []
    settings = LexiconSettings(min_term_length=3)
    for row, raw in answers.items():
        names = sorted({e.strip() for e in raw if e and e.strip()})
        if not names:
            continue
        expand = {abbr: full for abbr, full in abbreviations.items() if abbr in names}  # only what the LLM named
        lexicon = Lexicon.from_terms(pl.DataFrame({"name": names, "synonyms": [[] for _ in names]}), expand, settings)
        frames.append(extract_entities(notes[row], lexicon))
    if not frames:
        return pl.DataFrame(schema=ENTITY_SCHEMA)
    return pl.concat(frames).with_columns(pl.lit("llm").alias("method")).cast(ENTITY_SCHEMA)
