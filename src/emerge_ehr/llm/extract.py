"""Disease-entity extraction from notes with an LLM, and the refinement of its answers (EMERGE section 3).

The prompt asks for the diseases, syndromes and abnormal findings the patient has, with one worked
example, as JSON. Long notes are split into chunks of words that fit the model's context. Refinement keeps
an entity only where it occurs in the note (word boundaries, case and punctuation folded), normalises and
de-duplicates it, counts its mentions and flags negated and family-history mentions with the lexicon's
NegEx/ConText rules. A cue the model left inside an entity ("pt denies chest pain") is cut off first, so
that those rules see it in the note.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

import polars as pl

from emerge_ehr.llm.backends import Request
from emerge_ehr.text.lexicon import (
    ENTITY_SCHEMA, POST_FAMILY, POST_NEGATION, PRE_FAMILY, PRE_NEGATION, PSEUDO, Lexicon, LexiconSettings,
    extract_entities,
)
from emerge_ehr.settings import settings as _settings

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
    chunk_words: int
    max_chunks: int
    max_tokens: int  # the schema's longest list fits; 96 cut 11 % of answers mid-JSON

    @classmethod
    def from_config(cls, config: dict, **values) -> "ExtractionSettings":
        """From the validated configuration (every default filled by the schema); ``values`` override it."""
        return _settings(cls, config["llm_entities"], "llm_entities", **values)


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


def fitting_pieces(chunk: str, fits: Callable[[str], bool]) -> Iterator[str]:
    """The chunk if it fits, else its halves, each split again until it fits, in order.

    Words per chunk assume 1.5 tokens a word; lab tables run to 7 ("WBC-11.2* Hgb-9.8*"), and a text
    without spaces is one word, which is then cut by characters.

    >>> list(fitting_pieces("a b c d e", lambda piece: len(piece) <= 3))
    ['a b', 'c', 'd e']
    >>> list(fitting_pieces("abcdefgh", lambda piece: len(piece) <= 3))
    ['ab', 'cd', 'ef', 'gh']
    """
    if len(chunk) < 2 or fits(chunk):
        yield chunk
        return
    words = chunk.split()
    if len(words) > 1:
        halves = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    else:
        halves = chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]
    for piece in halves:
        yield from fitting_pieces(piece, fits)


def extraction_requests(
    notes: pl.DataFrame, settings: ExtractionSettings, max_model_len: int,
    prompt_tokens: Callable[[list[dict]], int] | None = None,
) -> tuple[list[Request], list[int]]:
    """One request per note chunk, and for each request the row of its note.

    ``prompt_tokens`` counts a prompt's tokens as the engine will (``backends.prompt_length``); with it, no
    prompt and its answer budget exceed ``max_model_len``: the engine refuses a longer prompt for the whole
    call, and cuts an answer off where the context ends.
    """
    size = words_per_chunk(settings, max_model_len)

    def fits(chunk: str) -> bool:
        if prompt_tokens is None:
            return True
        return prompt_tokens(extraction_messages(chunk)) + settings.max_tokens <= max_model_len

    requests, rows = [], []
    for row, text in enumerate(notes.get_column("text")):
        word_chunks = chunks(text or "", size, settings.max_chunks)
        pieces = (piece for chunk in word_chunks for piece in fitting_pieces(chunk, fits))
        for piece in islice(pieces, settings.max_chunks):
            requests.append(Request(extraction_messages(piece), ENTITY_ANSWER_SCHEMA, settings.max_tokens))
            rows.append(row)
    return requests, rows


WORD = re.compile(r"[^\W_]+")  # the lexicon's tokens: runs of letters and digits
CUE_KINDS = {phrase: kind for kind, phrases in (
    ("pseudo", PSEUDO), ("pre negation", PRE_NEGATION), ("pre family", PRE_FAMILY),
    ("post negation", POST_NEGATION), ("post family", POST_FAMILY),
) for phrase in phrases}
LONGEST_CUE = max(phrase.count(" ") + 1 for phrase in CUE_KINDS)
# Words that only say whose finding follows ("pt denies", "he does not have"): a negation cue after them
# still opens the entity; after a condition word it is part of a name ("dementia without behavioral
# disturbance").
LEAD_IN = frozenset({"pt", "patient", "s", "the", "he", "she", "they", "has", "have", "had", "is", "was",
                     "does", "did", "reports"})


def cue_spans(words: list[str]) -> list[tuple[int, int, str]]:
    """(first word, end word, kind) of the lexicon's cue phrases among lower-case words, in text order; where
    cues overlap the longest wins, so "no change" is a pseudo-cue and not "no".

    >>> cue_spans(["no", "evidence", "of", "pneumonia"])
    [(0, 3, 'pre negation')]
    """
    found = []
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + LONGEST_CUE) + 1):
            if (kind := CUE_KINDS.get(" ".join(words[i:j]))) is not None:
                found.append((i, j, kind))
    kept, taken = [], set()
    for i, j, kind in sorted(found, key=lambda span: (span[0] - span[1], span[0])):
        if taken.isdisjoint(range(i, j)):
            taken.update(range(i, j))
            kept.append((i, j, kind))
    return sorted(kept)


def condition_of(entity: str) -> str:
    """The condition an LLM entity names, without the negation or family cue inside it ("" if none is left).

    Refinement flags a mention from the cues around it in the note, so a cue inside the entity would make
    "pt denies chest pain" an affirmed finding. A family cue is cut wherever it is (no disease name has one);
    a negation cue before the condition only where nothing but lead-in words precede it; a cue after the
    condition ("pneumonia ruled out") ends it. Entities without a cue come back as they are, stripped.

    >>> [condition_of(e) for e in ("pt denies chest pain", "No evidence of pneumonia", "FH of CAD")]
    ['chest pain', 'pneumonia', 'CAD']
    >>> [condition_of(e) for e in ("non-small cell lung cancer", "dementia without behavioral disturbance")]
    ['non-small cell lung cancer', 'dementia without behavioral disturbance']
    """
    words = list(WORD.finditer(entity))
    lower = [w.group().lower() for w in words]
    start, end = 0, len(words)
    for i, j, kind in cue_spans(lower):
        if i >= end:
            break
        if kind == "pre family" or (kind == "pre negation" and LEAD_IN.issuperset(lower[start:i])):
            start = j
        elif kind.startswith("post") and i > start:
            end = i
    if (start, end) == (0, len(words)):
        return entity.strip()
    while start < end and lower[start] in LEAD_IN:
        start += 1
    return entity[words[start].start() : words[end - 1].end()] if start < end else ""


def refine(notes: pl.DataFrame, answers: dict[int, list[str]], abbreviations: dict[str, str]) -> pl.DataFrame:
    """The ``entities`` contract (method ``llm``) from each note's raw LLM entities.

    Entities absent from the note text disappear (a small model invents some); mentions are counted in
    the note, so entities come out ordered by frequency, with negation and family flags. Entities are cut to
    their condition first (``condition_of``), so the note's cues decide those flags.
    """
    frames = []
    settings = LexiconSettings(min_term_length=3)
    for row, raw in answers.items():
        names = sorted({name for name in map(condition_of, raw) if name})
        if not names:
            continue
        expand = {abbr: full for abbr, full in abbreviations.items() if abbr in names}  # only what the LLM named
        lexicon = Lexicon.from_terms(pl.DataFrame({"name": names, "synonyms": [[] for _ in names]}), expand, settings)
        frames.append(extract_entities(notes[row], lexicon))
    if not frames:
        return pl.DataFrame(schema=ENTITY_SCHEMA)
    return pl.concat(frames).with_columns(pl.lit("llm").alias("method")).cast(ENTITY_SCHEMA)
