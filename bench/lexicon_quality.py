"""Quality and speed of the lexicon entity extractor on synthetic MIMIC-IV notes.

Generates a synthetic MIMIC-IV database, runs the lexicon over each admission's radiology and discharge
notes, and scores the extracted entities against the generator's planted conditions:

- recall: planted conditions extracted as the patient's own (not negated, not family history);
- precision: among extracted own entities that map to a generator condition, those that are planted.
  Entities that are no generator condition (chest pain, pleural effusion, ...) are ignored: the generator
  has no ground truth for them;
- negation / family error rate: conditions the notes mention only negated or only as family history
  (the generator writes absent conditions only that way) that were extracted as the patient's own.

An entity maps to a condition when it equals the normalised condition name, one of its note surface
forms, or the expansion of a surface-form abbreviation. Terms: the KG's disease and phenotype nodes
(``resources/kg/builtin/nodes.parquet``) when present, else the generator's names and surface forms plus
distractor terms. Speed is measured with a ~110k-term lexicon (the KG, or synthetic terms standing in).

    .venv/bin/python bench/lexicon_quality.py --patients 300 --seed 0 [--terms generator]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic import CONDITIONS, generate  # noqa: E402
from emerge_ehr.text.lexicon import Lexicon, extract_entities, load_abbreviations, normalise  # noqa: E402
from emerge_ehr.evaluate.entities import condition_keys  # noqa: E402

KG_NODES = REPO / "resources" / "kg" / "builtin" / "nodes.parquet"
KG_TYPES = ("disease", "effect/phenotype")
TERMS_SCHEMA = {"name": pl.String, "synonyms": pl.List(pl.String)}
# Findings in the generated notes that are no planted condition, plus look-alikes that must not match.
DISTRACTORS = (
    "pleural effusion", "pneumothorax", "chest pain", "shortness of breath", "fever", "hypotension",
    "altered mental status", "weakness", "breast cancer", "coronary artery disease", "pulmonary embolism",
    "abdominal pain", "nausea", "vomiting", "chills", "pulmonary nodule", "consolidation", "rhonchi",
    "pulmonary edema", "respiratory failure", "kidney injury", "heart disease", "liver disease",
    "diabetes insipidus", "bronchopneumonia", "lung cancer", "renal failure", "deep vein thrombosis",
)


def kg_terms(source: str) -> tuple[pl.DataFrame, str]:
    """The terms table: KG disease/phenotype nodes ("kg", or "auto" when built), else generator forms
    plus distractors."""
    if source == "kg" or (source == "auto" and KG_NODES.exists()):
        nodes = pl.read_parquet(KG_NODES)
        return nodes.filter(pl.col("type").is_in(KG_TYPES)).select("name", "synonyms"), f"KG {KG_NODES.name}"
    names = [c.name for c in CONDITIONS] + list(DISTRACTORS)
    synonyms = [list(c.forms) for c in CONDITIONS] + [[] for _ in DISTRACTORS]
    terms = pl.DataFrame({"name": names, "synonyms": synonyms}, schema=TERMS_SCHEMA)
    return terms, "generator forms + distractors (no KG built)"


def fake_terms(texts: list[str], n: int, seed: int) -> pl.DataFrame:
    """~n stand-in KG terms: random pseudo-words plus 10% word n-grams of the notes (which do match)."""
    rng = random.Random(seed)
    syllables = ("ab", "el", "ox", "ur", "ith", "mon", "tra", "pel", "sis", "cor", "dy", "neu", "pha")
    words = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(20000)]
    names = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(int(n * 0.9))]
    tokens = normalise(" ".join(texts[:200])).split(" ")
    while len(names) < n:
        start = rng.randrange(len(tokens) - 3)
        names.append(" ".join(tokens[start:start + rng.randint(1, 3)]))
    return pl.DataFrame({"name": names, "synonyms": [[]] * n}, schema=TERMS_SCHEMA)


def load_notes(root: Path) -> pl.DataFrame:
    """Radiology and discharge notes keyed by admission (stay_id holds the hadm_id here)."""
    notes = pl.concat([pl.read_csv(root / "note" / f"{kind}.csv.gz", infer_schema_length=0)
                       for kind in ("radiology", "discharge")])
    return notes.select(stay_id=pl.col("hadm_id").cast(pl.Int64), note_id="note_id", text="text")


def family_section(text: str) -> str:
    """The generator's 'Family History:' section of a discharge note (ground truth for its context)."""
    _, _, rest = text.partition("Family History:\n")
    return rest.partition("\n\n")[0]


def score(notes: pl.DataFrame, entities: pl.DataFrame, truth: pl.DataFrame, keys: dict[str, str]) -> dict:
    """Condition-level counts per admission, summed: recall, precision and context errors."""
    ent = entities.with_columns(condition=pl.col("entity").replace_strict(keys, default=None))
    ent = ent.drop_nulls("condition")
    own = ent.filter(~pl.col("negated") & ~pl.col("family"))
    own_by = dict(own.group_by("stay_id").agg(pl.col("condition").unique()).iter_rows())
    any_by = dict(ent.group_by("stay_id").agg(pl.col("condition").unique()).iter_rows())
    fam_text: dict[int, str] = {}
    for stay, text in notes.select("stay_id", "text").iter_rows():
        fam_text[stay] = f"{fam_text.get(stay, '')} {normalise(family_section(text))} "
    forms = {c.name: {f" {normalise(f)} " for f in (c.name, *c.forms)} for c in CONDITIONS}
    c = {k: 0 for k in ("planted", "mentioned", "tp", "tp_mentioned", "fp", "missed_as_context",
                        "ctx_neg", "ctx_neg_err", "ctx_fam", "ctx_fam_err")}
    per_cond = {cond.name: [0, 0, 0] for cond in CONDITIONS}  # planted, found, false positive
    admissions = truth.select("hadm_id", "conditions", "mentions").unique("hadm_id")
    for stay, planted, mentions in admissions.iter_rows():
        if stay not in any_by:
            continue
        planted, got, seen = set(planted), set(own_by.get(stay, [])), set(any_by[stay])
        mentioned = {cond for cond in planted if forms[cond] & {f" {normalise(m)} " for m in mentions}}
        fam = fam_text.get(stay, "")
        c["planted"] += len(planted)
        c["mentioned"] += len(mentioned)
        c["tp"] += len(planted & got)
        c["tp_mentioned"] += len(mentioned & got)
        c["fp"] += len(got - planted)
        c["missed_as_context"] += len((planted & seen) - got)
        for cond in planted:
            per_cond[cond][0] += 1
            per_cond[cond][1] += cond in got
        for cond in seen - planted:  # mentioned only negated or as family history
            kind = "ctx_fam" if any(f in fam for f in forms[cond]) else "ctx_neg"
            c[kind] += 1
            c[kind + "_err"] += cond in got
            per_cond[cond][2] += cond in got
    return c | {"per_condition": per_cond}


def timed_extraction(terms: pl.DataFrame, abbreviations: dict,
                     notes: pl.DataFrame) -> tuple[float, float, pl.DataFrame]:
    """Automaton build seconds, extraction notes/second and the entities."""
    t0 = time.perf_counter()
    lexicon = Lexicon.from_terms(terms, abbreviations)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    entities = extract_entities(notes, lexicon)
    return build, notes.height / (time.perf_counter() - t0), entities


def pct(a: int, b: int) -> str:
    """A percentage with its counts, so small denominators stay visible."""
    return f"{100 * a / b:.1f}% ({a}/{b})" if b else "n/a"


def main(argv=None) -> None:
    """Generate, extract, score, print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--terms", choices=("auto", "kg", "generator"), default="auto",
                        help="terms table: the KG's disease/phenotype nodes, or the generator's forms")
    parser.add_argument("--fake-terms", type=int, default=110_000,
                        help="lexicon size for the speed test without a KG")
    args = parser.parse_args(argv)
    abbreviations = load_abbreviations(REPO / "config" / "abbreviations.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, layout="mimic4", n_patients=args.patients, seed=args.seed)
        notes = load_notes(Path(tmp))
        truth = pl.read_parquet(Path(tmp) / "ground_truth.parquet")
    terms, source = kg_terms(args.terms)
    build, rate, entities = timed_extraction(terms, abbreviations, notes)
    timings = [(terms.height, build, rate)]
    if terms.height < 100_000:  # time a KG-sized lexicon too
        big = pl.concat([terms, fake_terms(notes["text"].to_list(), args.fake_terms, args.seed)])
        timings.append((big.height, *timed_extraction(big, abbreviations, notes)[:2]))
    c = score(notes, entities, truth, condition_keys(abbreviations))
    chars = notes["text"].str.len_chars().mean()
    print(f"Synthetic MIMIC-IV, {args.patients} patients, seed {args.seed}: {notes.height} notes "
          f"(mean {chars:.0f} characters), {entities.height} entity rows. "
          f"Terms: {source}, {terms.height} rows.\n")
    print("| metric | value |\n|---|---|")
    print(f"| recall, planted conditions | {pct(c['tp'], c['planted'])} |")
    print(f"| recall, planted conditions the notes mention | {pct(c['tp_mentioned'], c['mentioned'])} |")
    print(f"| precision (generator conditions only) | {pct(c['tp'], c['tp'] + c['fp'])} |")
    print(f"| planted but extracted only negated/family | {c['missed_as_context']} |")
    print("| negation error rate (absent, mentioned negated, taken as own) | "
          f"{pct(c['ctx_neg_err'], c['ctx_neg'])} |")
    print("| family error rate (absent, family history only, taken as own) | "
          f"{pct(c['ctx_fam_err'], c['ctx_fam'])} |")
    for n_terms, seconds, notes_per_s in timings:
        print(f"| automaton build, {n_terms} terms | {seconds:.2f} s |")
        print(f"| extraction, {n_terms} terms (1 core) | {notes_per_s:.0f} notes/s |")
    print("\n| condition | planted | recall | absent taken as own |\n|---|---|---|---|")
    for name, (planted, found, fp) in c["per_condition"].items():
        print(f"| {name} | {planted} | {pct(found, planted)} | {fp} |")


if __name__ == "__main__":
    main()
