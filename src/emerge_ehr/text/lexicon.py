"""Lexicon entity extraction from clinical notes: knowledge-graph terms, negation and family history.

EMERGE aligns disease and phenotype entities in notes to knowledge-graph nodes. This extractor needs no
language model: it finds the KG node names and synonyms (plus the clinical abbreviations of
``config/abbreviations.yaml``) in the note text with Aho-Corasick automata, and flags each mention in the
style of NegEx / ConText as negated (or ruled out / uncertain) and as family history.

Text model: a note is split into word tokens (runs of letters and digits). Matching works on the tokens
joined by single spaces, so case, hyphens, slashes, commas and repeated whitespace are folded
("Heart-failure" ~ "heart failure") and a term only matches whole words. A sentence break (``. ! ? ; :``
followed by whitespace, or a blank line) is never crossed by a term or a negation scope; a line break is
crossed by a term (wrapped lines) but ends a negation scope (list items).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import ahocorasick
import polars as pl
import yaml

ENTITY_SCHEMA = {
    "stay_id": pl.Int64,
    "note_id": pl.String,
    "entity": pl.String,
    "count": pl.Int32,
    "method": pl.String,
    "negated": pl.Boolean,
    "family": pl.Boolean,
}

_TOKEN = re.compile(r"[^\W_]+")
_SENTENCE_BREAK = re.compile(r"[.!?;:](?:\s|$)|\n[ \t]*\n")
# A heading is a short label at the start of a line followed by a colon ("Family History:").
_HEADING = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9 /&'(),-]{0,40}?)[ \t]*:[ \t]*(\S[^\n]*)?$", re.M)

# --------------------------------------------------------------------------------------------------
# Cue phrases (normalised), after NegEx (Chapman et al. 2001) and ConText (Harkema et al. 2009)
# --------------------------------------------------------------------------------------------------

# Before the finding. Uncertainty ("rule out", "r/o", "eval for") counts as negated: the finding is
# not established as the patient's.
PRE_NEGATION = (
    "no", "not", "denies", "denied", "deny", "denying", "without", "never", "never had", "absent",
    "no evidence of", "no evidence for", "no signs of", "no sign of", "no history of", "no new",
    "negative for", "free of", "absence of", "no longer", "fails to reveal", "ruled out for",
    "rule out", "rules out", "r o", "low suspicion for", "low suspicion of", "unlikely to be",
    "eval for", "evaluate for", "evaluation for", "assess for", "nobody", "no one",
)
# After the finding ("pneumonia was ruled out"). Prophylaxis ("DVT ppx") means the patient has none.
POST_NEGATION = (
    "ruled out", "was ruled out", "is ruled out", "are ruled out", "were ruled out", "been ruled out",
    "has been ruled out", "have been ruled out", "unlikely", "is unlikely", "was negative",
    "is negative", "were negative", "is absent", "was absent", "not seen", "prophylaxis", "ppx",
)
# Phrases that contain a cue but negate nothing; they win over the shorter cue inside them.
PSEUDO = (
    "not only", "not ruled out", "not been ruled out", "not necessarily", "not certain if",
    "not certain whether", "not excluded", "cannot be excluded", "cannot exclude", "can not be excluded",
    "no change", "no interval change", "no significant change", "no increase", "no further",
    "without difficulty", "gram negative",
)
# End a negation or family scope: the clause after them is about something else.
TERMINATORS = (
    "but", "however", "although", "though", "nevertheless", "yet", "except", "aside from",
    "apart from", "which", "who", "presents with", "presented with", "presenting with",
    "secondary to", "due to", "cause of", "source of", "etiology of", "reason for", "now with",
)
RELATIVES = (
    "mother", "father", "sister", "brother", "son", "daughter", "aunt", "uncle", "grandmother",
    "grandfather", "grandparent", "grandparents", "sibling", "siblings", "sisters", "brothers",
    "parent", "parents", "cousin", "mom", "dad", "niece", "nephew", "grandson", "granddaughter", "twin",
    "mgm", "mgf", "pgm", "pgf",  # maternal / paternal grandmother / grandfather
)
# A relative is a family cue only with a verb of having ("mother had", "father died of"), so that
# "daughter at bedside" or "son drove him in" are not.
_RELATIVE_LINKS = (
    "had", "has", "have", "with", "died of", "died from", "passed away from", "was diagnosed with",
    "diagnosed with", "history of", "s history of", "suffered from", "suffers from", "had a history of",
    "has a history of", "with a history of", "also had", "also has", "who had", "who has", "died",
    "is", "was",
)
PRE_FAMILY = (
    "family history of", "family history", "family hx", "family hx of", "fhx", "fh", "fh of",
    "family medical history", "familial history of", "family member with", "family members with",
    "relative with", "relatives with", "nobody in the family", "no one in the family",
    *(f"{rel} {link}" for rel in RELATIVES for link in _RELATIVE_LINKS),
)
POST_FAMILY = (
    "in the family", "in his family", "in her family", "in family", "runs in the family",
    "side of the family", "sides of the family", "side of family", "maternal side", "paternal side",
    *(f"in {whose} {rel}" for whose in ("his", "her", "the", "a", "both", "their") for rel in RELATIVES),
)
# Headings that open a family-history section (a heading line alone opens it until the next heading).
FAMILY_HEADINGS = frozenset({"family history", "family hx", "fhx", "fh", "family medical history", "fam hx"})


@dataclass(frozen=True)
class LexiconSettings:
    """How KG terms become patterns and how far a negation or family cue reaches."""

    # Shorter KG terms ("ai", "mi", "all") are mostly noise; abbreviations are curated and exempt.
    min_term_length: int = 4
    # KG names (all in the default KG) that are not findings in notes: HPO clinical modifiers and
    # inheritance/frequency terms ("severe", "left", "diffuse", "frequent"), and words or headings of
    # ordinary note prose ("illness", "family history", "stress", "tender" as in "non-tender"). "pain"
    # is everywhere ("pain controlled with PRN meds"); "chest pain" and other specific pains still match.
    stop_terms: tuple[str, ...] = (
        "mild", "moderate", "severe", "profound", "acute", "subacute", "chronic", "progressive",
        "recurrent", "episodic", "transient", "intermittent", "periodic", "nocturnal", "prolonged",
        "refractory", "borderline", "onset", "frequent", "occasional", "frequency", "very rare", "sporadic",
        "obligate", "stable", "left", "right", "bilateral", "unilateral", "lateral", "distal", "proximal",
        "peripheral", "generalized", "localized", "diffuse", "focal", "left sided", "right sided", "sharp",
        "dull", "intensity", "severity", "affected", "position", "triggered by", "aggravated by",
        "mode of inheritance", "variable expressivity", "incomplete penetrance", "congenital onset",
        "adult onset", "childhood onset", "phenotypic abnormality", "clinical modifier",
        "family history", "past medical history", "illness", "healthy", "activity", "stress", "counseling",
        "tender", "pain", "pain in",
    )
    # NegEx scope: a cue reaches a finding that starts (ends) within this many tokens after (before) it.
    # A family cue before a finding reaches to the end of its sentence, as in ConText ("Her father has
    # type 1 diabetes and heart disease"); one after it uses this window.
    window_tokens: int = 6


@dataclass(frozen=True)
class Mention:
    """One entity occurrence: character span in the note, canonical entity and its context flags."""

    start: int
    end: int
    surface: str
    entity: str
    negated: bool
    family: bool


# Cue roles, stored as bits in the cue automaton's values.
_PRE_NEG, _POST_NEG, _PRE_FAM, _POST_FAM, _PSEUDO, _TERM = (1, 2, 4, 8, 16, 32)


def _lower_token(token: str) -> str:
    """Lower-case a token without changing its length, so lower and original text share offsets."""
    low = token.lower()
    if len(low) == len(token):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in token)


def normalise(text: str) -> str:
    """Lower case, punctuation and whitespace folded to single spaces, stripped: the matching form."""
    return " ".join(_lower_token(t) for t in _TOKEN.findall(text))


def load_abbreviations(path: str | Path) -> dict[str, str]:
    """Read the abbreviation -> expansion mapping, rejecting keys YAML turned into non-strings."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"{path}: abbreviations and expansions must be strings (quote them): {bad}")
    return data


@dataclass
class _Doc:
    """A note as tokens with their character spans, sentence/segment ids and padded match strings."""

    starts: list[int]
    ends: list[int]
    sentence: list[int]  # id of the sentence a token is in (sentence breaks)
    segment: list[int]  # id of the scope segment (sentence breaks and line breaks)
    lower: str  # " tok tok ... " lower case
    cased: str  # " Tok tok ... " as written, same offsets as `lower`
    token_ending_at: dict[int, int]  # offset just after a token in `lower` -> token index
    segment_first: list[int]  # per token, the first token of its scope segment
    segment_last: list[int]  # per token, the last token of its scope segment

    @classmethod
    def parse(cls, text: str) -> "_Doc":
        """Tokenise and classify the gap before each token: space, line break or sentence break."""
        starts, ends, words, sentence, segment = [], [], [], [], []
        sent = seg = 0
        prev_end, prev_len = None, 0
        for m in _TOKEN.finditer(text):
            s, e = m.span()
            if prev_end is not None:
                gap = text[prev_end:s]
                if gap != " ":
                    initial = gap[0] == "." and prev_len == 1 and "\n" not in gap  # "C. diff", "E. coli"
                    if _SENTENCE_BREAK.search(gap) and not initial:
                        sent += 1
                        seg += 1
                    elif "\n" in gap:
                        seg += 1
            starts.append(s)
            ends.append(e)
            words.append(m.group())
            sentence.append(sent)
            segment.append(seg)
            prev_end, prev_len = e, e - s
        token_ending_at, pos = {}, 1
        for k, w in enumerate(words):
            pos += len(w)
            token_ending_at[pos] = k
            pos += 1
        cased = " " + " ".join(words) + " "
        lower = " " + " ".join(_lower_token(w) for w in words) + " "
        n = len(segment)
        first, last = [0] * n, [0] * n
        for k in range(n):
            first[k] = first[k - 1] if k and segment[k] == segment[k - 1] else k
        for k in reversed(range(n)):
            last[k] = last[k + 1] if k < n - 1 and segment[k] == segment[k + 1] else k
        return cls(starts, ends, sentence, segment, lower, cased, token_ending_at, first, last)

    def spans(self, automaton: ahocorasick.Automaton, cased: bool = False):
        """(first token, end token, value) of each whole-word hit within one sentence."""
        if len(automaton) == 0:
            return
        for end, value in automaton.iter(self.cased if cased else self.lower):
            j = self.token_ending_at[end] + 1
            i = j - value[0]
            if self.sentence[i] == self.sentence[j - 1]:
                yield i, j, value


def _longest_first(spans: list[tuple]) -> list[tuple]:
    """Keep the longest spans, dropping any that overlap a kept one ("acute kidney injury" over
    "kidney injury"); spans are (first token, end token, rank, ...) with lower rank winning ties."""
    spans = sorted(spans, key=lambda s: (s[0] - s[1], s[2], s[0]))
    taken: set[int] = set()
    kept = []
    for span in spans:
        tokens = range(span[0], span[1])
        if not taken.intersection(tokens):
            taken.update(tokens)
            kept.append(span)
    return sorted(kept)


def _family_ranges(text: str) -> list[tuple[int, int]]:
    """Character ranges under a family-history heading: to the next heading if the heading is alone on
    its line, else that line only. Lines headed by a relative ("Mother: HTN") are family too."""
    ranges, open_at = [], None
    for m in _HEADING.finditer(text):
        name = normalise(m.group(1))
        if name.split(" ")[-1] in RELATIVES:
            ranges.append((m.start(), m.end()))
            continue
        if open_at is not None:
            ranges.append((open_at, m.start()))
            open_at = None
        if name in FAMILY_HEADINGS:
            if m.group(2):
                ranges.append((m.start(2), m.end()))
            else:
                open_at = m.end()
    if open_at is not None:
        ranges.append((open_at, len(text)))
    return ranges


def _cue_automaton() -> ahocorasick.Automaton:
    """One automaton over all cue phrases; a phrase may have several roles ("absent": pre and post)."""
    roles: dict[str, int] = {}
    for phrases, role in ((PRE_NEGATION, _PRE_NEG), (POST_NEGATION, _POST_NEG), (PRE_FAMILY, _PRE_FAM),
                          (POST_FAMILY, _POST_FAM), (PSEUDO, _PSEUDO), (TERMINATORS, _TERM)):
        for phrase in phrases:
            roles[phrase] = roles.get(phrase, 0) | role
    automaton = ahocorasick.Automaton()
    for phrase, role in roles.items():
        automaton.add_word(f" {phrase} ", (phrase.count(" ") + 1, role))
    automaton.make_automaton()
    return automaton


def _is_acronym(term: str) -> bool:
    """Short all-capital words in the KG ("AIDS") are acronyms, matched case-sensitively ("aids")."""
    return term.isupper() and term.isalnum() and len(term) <= 6


class Lexicon:
    """Aho-Corasick automata over KG terms and abbreviations, plus the NegEx/ConText cues."""

    def __init__(self, lower: ahocorasick.Automaton, cased: ahocorasick.Automaton, settings: LexiconSettings):
        self.lower = lower  # case-insensitive patterns: " term " -> (n tokens, rank, entity)
        self.cased = cased  # case-sensitive patterns (abbreviations, acronyms)
        self.cues = _cue_automaton()
        self.settings = settings

    @classmethod
    def from_terms(cls, terms: pl.DataFrame, abbreviations: dict[str, str],
                   settings: LexiconSettings = LexiconSettings()) -> "Lexicon":
        """Build the automata from KG names and synonyms (columns name, synonyms) and abbreviations.

        Abbreviations win over a KG term with the same spelling (rank 0 before 1), so "COPD" yields its
        curated expansion. A term's entity is its normalised form.
        """
        raw = pl.concat([terms.select(term=pl.col("name")),
                         terms.select(term=pl.col("synonyms").explode())]).drop_nulls().unique()["term"]
        stop = {normalise(t) for t in settings.stop_terms}
        lower: dict[str, tuple] = {}
        cased: dict[str, tuple] = {}
        for term in raw:
            norm = normalise(term)
            if len(norm) < settings.min_term_length or norm in stop or not any(c.isalpha() for c in norm):
                continue
            n = norm.count(" ") + 1
            if _is_acronym(term):
                cased[f" {term} "] = (n, 1, norm)
            else:
                lower[f" {norm} "] = (n, 1, norm)
        for abbr, expansion in abbreviations.items():
            words = _TOKEN.findall(abbr)
            if not words:
                raise ValueError(f"abbreviation {abbr!r} has no letters or digits")
            value = (len(words), 0, normalise(expansion))
            if abbr == abbr.lower():
                lower[f" {' '.join(words)} "] = value
            else:
                cased[f" {' '.join(words)} "] = value
        return cls(_automaton(lower), _automaton(cased), settings)

    def find(self, text: str) -> list[Mention]:
        """All entity mentions in a note, in text order, with negation and family flags."""
        doc = _Doc.parse(text)
        hits = [(i, j, v[1], v[2]) for i, j, v in doc.spans(self.lower)]
        hits += [(i, j, v[1], v[2]) for i, j, v in doc.spans(self.cased, cased=True)]
        if not hits:
            return []
        entities = _longest_first(hits)
        cues = _Cues(_longest_first([(i, j, 0, v[1]) for i, j, v in doc.spans(self.cues)]))
        terminators = [i for i, _, _, role in cues.spans if role & _TERM]
        family_ranges = _family_ranges(text)
        out = []
        for i, j, _, entity in entities:
            start, end = doc.starts[i], doc.ends[j - 1]
            in_section = any(a <= start < b for a, b in family_ranges)
            out.append(Mention(
                start, end, text[start:end], entity,
                negated=self._in_scope(doc, cues, terminators, i, j, _PRE_NEG, _POST_NEG, short=True),
                family=in_section
                or self._in_scope(doc, cues, terminators, i, j, _PRE_FAM, _POST_FAM, short=False),
            ))
        return out

    def _in_scope(self, doc: _Doc, cues: "_Cues", terminators: list[int], i: int, j: int, pre: int, post: int,
                  short: bool) -> bool:
        """Whether a pre cue before token i (within the window if `short`), or a post cue shortly after
        token j, reaches the mention: same segment and no terminator in between.

        Only the cues in that reach are visited (found by bisection), so a long note costs
        mentions x nearby cues, not mentions x all cues.
        """
        window = self.settings.window_tokens
        reach = window if short else len(doc.starts)
        first = max(i - reach, doc.segment_first[i])  # a pre cue ends after this token and at or before i
        for a, b, _, role in cues.ending_in(first + 1, i):
            if role & pre and not _between(terminators, b, i):
                return True
        last = min(j + window, doc.segment_last[j - 1] + 1)  # a post cue starts in [j, last)
        for a, b, _, role in cues.starting_in(j, last - 1):
            if role & post and not _between(terminators, j, a):
                return True
        return False


class _Cues:
    """A note's cue spans (non-overlapping, in token order), looked up by where they end or start."""

    def __init__(self, spans: list[tuple]):
        self.spans = spans
        self.starts = [span[0] for span in spans]
        self.ends = [span[1] for span in spans]

    def ending_in(self, lo: int, hi: int) -> list[tuple]:
        """Spans whose end token (exclusive) lies in [lo, hi]."""
        return self.spans[bisect_left(self.ends, lo):bisect_right(self.ends, hi)]

    def starting_in(self, lo: int, hi: int) -> list[tuple]:
        """Spans whose first token lies in [lo, hi]."""
        return self.spans[bisect_left(self.starts, lo):bisect_right(self.starts, hi)]


def _between(positions: list[int], lo: int, hi: int) -> bool:
    """Whether any sorted token position lies in [lo, hi)."""
    k = bisect_right(positions, lo - 1)
    return k < len(positions) and positions[k] < hi


def _automaton(patterns: dict[str, tuple]) -> ahocorasick.Automaton:
    """An Aho-Corasick automaton over space-padded patterns (padding enforces whole-word matches)."""
    automaton = ahocorasick.Automaton()
    for key, value in patterns.items():
        automaton.add_word(key, value)
    if patterns:
        automaton.make_automaton()
    return automaton


def extract_entities(notes: pl.DataFrame, lexicon: Lexicon) -> pl.DataFrame:
    """Entities per note: one row per (stay_id, note_id, entity, negated, family) with its count."""
    columns: dict[str, list] = {name: [] for name in ENTITY_SCHEMA}
    for stay_id, note_id, text in notes.select("stay_id", "note_id", "text").iter_rows():
        if not text:
            continue
        counts = Counter((m.entity, m.negated, m.family) for m in lexicon.find(text))
        for (entity, negated, family), count in counts.items():
            row = (stay_id, note_id, entity, count, "lexicon", negated, family)
            for name, value in zip(ENTITY_SCHEMA, row):
                columns[name].append(value)
    return sort_entities(pl.DataFrame(columns, schema=ENTITY_SCHEMA))


def sort_entities(entities: pl.DataFrame) -> pl.DataFrame:
    """The entity table's order: by stay and note, the most mentioned entity first."""
    return entities.sort(["stay_id", "note_id", "count", "entity", "negated", "family"],
                         descending=[False, False, True, False, False, False])
