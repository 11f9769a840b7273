"""Schema-valid LLM entity answers on long notes: the first try, after retries, and why answers fail.

Real notes run to 1,000-2,000 tokens, and a long note names many conditions, so a long entity list is
where an answer budget runs out mid-JSON. The openly licensed MTS-Dialog note sections (CC BY 4.0,
``../shared/data/clinical-notes/mts-dialog/``) are short (median 14 words), and each comes from another
encounter. A long note here is a window of consecutive sections (the four CSV files in a fixed order, each
section under its heading, e.g. ``HISTORY OF PRESENT ILLNESS:``), grown until it has ``--note-tokens``
tokens of the model's tokenizer. ``--notes`` windows start evenly spread over the 1,701 sections, so every
note differs from the others, and at the defaults (160 notes of 1,500 tokens, 10-46 sections each) a section
appears in 2.3 notes on average (1 to 5).

The notes go through the stage's own code path: ``extraction_requests`` (chunking by the model context),
the runner (validation and retries) and the pipeline's backend, with the ``llm`` and ``llm_entities``
settings of ``config/config.yaml`` and an empty, temporary answer cache. The first attempt of each prompt
is read back from that cache (answer text and token count), so failure reasons and answer lengths are
those of the first try::

    .venv/bin/python bench/llm_long_notes.py                      # 160 notes of about 1,500 tokens
    .venv/bin/python bench/llm_long_notes.py --max-tokens 96      # another answer budget
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MTS_DIALOG = REPO.parent / "shared" / "data" / "clinical-notes" / "mts-dialog"
SECTION_FILES = ("MTS-Dialog-TrainingSet.csv", "MTS-Dialog-ValidationSet.csv",
                 "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv")
# The dataset's normalised section headers, as the headings a note would carry (its README).
HEADINGS = {
    "FAM/SOCHX": "FAMILY HISTORY/SOCIAL HISTORY", "GENHX": "HISTORY OF PRESENT ILLNESS",
    "PASTMEDICALHX": "PAST MEDICAL HISTORY", "CC": "CHIEF COMPLAINT", "PASTSURGICAL": "PAST SURGICAL HISTORY",
    "ROS": "REVIEW OF SYSTEMS", "EDCOURSE": "EMERGENCY DEPARTMENT COURSE", "GYNHX": "GYNECOLOGIC HISTORY",
    "OTHER_HISTORY": "OTHER HISTORY",
}


def sections(folder: Path) -> list[str]:
    """Every section as ``HEADING:\\ntext``, in file and row order."""
    import polars as pl

    columns = ["section_header", "section_text"]
    frames = [pl.read_csv(folder / name, columns=columns) for name in SECTION_FILES]
    rows = pl.concat(frames).iter_rows()
    return [f"{HEADINGS.get(header.upper(), header.upper())}:\n{text.strip()}" for header, text in rows]


def long_notes(parts: list[str], count: int, target_tokens: int, tokens) -> list[str]:
    """``count`` notes, each the consecutive parts from an evenly spread start until ``target_tokens``.

    ``tokens`` counts the tokens of a text; the parts wrap around at the end.

    >>> long_notes(["a", "b", "c", "d"], 2, 3, lambda text: len(text.split()))
    ['a\\n\\nb', 'c\\n\\nd']
    """
    notes = []
    for n in range(count):
        start, taken, total = n * len(parts) // count, [], 0
        while total < target_tokens and len(taken) < len(parts):
            part = parts[(start + len(taken)) % len(parts)]
            taken.append(part)
            total += tokens(part) + 1
        notes.append("\n\n".join(taken))
    return notes


def pipeline_settings(config_path: Path, max_tokens: int | None):
    """The ``llm`` and ``llm_entities`` settings of a pipeline config, as the stage takes them."""
    from emerge_ehr.llm.backends import LLMSettings
    from emerge_ehr.llm.extract import ExtractionSettings

    from emerge_ehr.settings import complete

    config = complete(yaml.safe_load(config_path.read_text()))
    extraction = ExtractionSettings.from_config(config, **({"max_tokens": max_tokens} if max_tokens else {}))
    return LLMSettings.from_config(config), extraction


def first_attempts(requests, backend, cache, settings) -> list[tuple[str, int]]:
    """Each request's first answer and its token count, from the answer cache the runner filled."""
    from emerge_ehr.llm.backends import decoding
    from emerge_ehr.llm.cache import request_key

    keys = [request_key(backend.identity, r.messages, r.schema, decoding(settings, r)) for r in requests]
    stored = {}
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        query = f"SELECT key, answer, tokens FROM answers WHERE key IN ({','.join('?' * len(chunk))})"
        rows = cache.connection.execute(query, chunk)
        stored.update({key: (answer, tokens) for key, answer, tokens in rows})
    return [stored[key] for key in keys]


def percentile(values: list[int], share: float) -> int:
    """The nearest-rank percentile.

    >>> percentile([1, 2, 3, 4], 0.5)
    2
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


def report(texts, requests, prompt_tokens, first, results, stats, settings, extraction, dtype, tokens):
    """Validity at the first try and after retries, why first answers failed, and how long answers ran."""
    from emerge_ehr.llm.runner import parse_answer

    parsed = [parse_answer(text, r.schema) for (text, _), r in zip(first, requests)]
    errors = [error for _, error in parsed]
    answer_tokens = [count for _, count in first]
    note_tokens = [tokens(t) for t in texts]
    return {
        "notes": len(texts), "note_tokens_median": percentile(note_tokens, 0.5),
        "note_tokens_max": max(note_tokens),
        "note_words_median": percentile([len(t.split()) for t in texts], 0.5), "prompts": len(requests),
        "prompt_tokens_max": max(prompt_tokens), "max_tokens": extraction.max_tokens,
        "max_model_len": settings.max_model_len, "dtype": dtype,
        "first_try_valid_pct": round(100 * errors.count(None) / len(requests), 1),
        "first_try_failures": dict(Counter(e for e in errors if e)),
        "first_try_failures_below_max_tokens": sum(bool(e) and n < extraction.max_tokens
                                                   for e, n in zip(errors, answer_tokens)),
        "valid_after_retries_pct": round(100 * sum(r.value is not None for r in results) / len(requests), 1),
        "failures_after_retries": stats.failure_reasons, "retries": stats.retries,
        "answer_tokens": {f"p{round(q * 100)}": percentile(answer_tokens, q) for q in (0.5, 0.9, 0.99, 1.0)},
        "first_answers_at_max_tokens": sum(n >= extraction.max_tokens for n in answer_tokens),
        "entities_per_valid_first_answer_max": max((len(v["entities"]) for v, _ in parsed if v), default=0),
        "seconds": round(stats.seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=160)
    parser.add_argument("--note-tokens", type=int, default=1500, help="tokens per note (model tokenizer)")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--max-tokens", type=int, help="answer budget instead of llm_entities.max_tokens")
    parser.add_argument("--show", type=int, default=0, help="print this many failed first answers")
    args = parser.parse_args()
    from emerge_ehr.runtime import start_job

    start_job(len(os.sched_getaffinity(0)), None, fast_allocator=True)  # as an LLM job: threads, malloc, logs
    import polars as pl
    from transformers import AutoTokenizer

    from emerge_ehr.llm.backends import make_backend, prompt_length
    from emerge_ehr.llm.cache import AnswerCache
    from emerge_ehr.llm.extract import extraction_requests
    from emerge_ehr.llm.runner import parse_answer, run

    settings, extraction = pipeline_settings(args.config, args.max_tokens)
    settings = dataclasses.replace(settings, model=str(REPO / settings.model),  # absolute paths stay
                                   workdir=str(REPO / "resources" / "bench" / "llm-long-notes"))
    tokenizer = AutoTokenizer.from_pretrained(settings.model)

    def tokens(text: str) -> int:
        return len(tokenizer.encode(text))

    texts = long_notes(sections(MTS_DIALOG), args.notes, args.note_tokens, tokens)
    notes = pl.DataFrame({"stay_id": range(len(texts)), "note_id": [f"mts{i}" for i in range(len(texts))],
                          "text": texts})
    count = prompt_length(settings)
    requests, _ = extraction_requests(notes, extraction, settings.max_model_len, count)
    backend = make_backend(settings)
    with tempfile.TemporaryDirectory() as scratch:  # no answer from an earlier run
        cache = AnswerCache(Path(scratch) / "answers", writer="bench")
        results, stats = run(requests, backend, cache, settings, "long notes")
        first = first_attempts(requests, backend, cache, settings)
        cache.close()
    prompt_tokens = [count(r.messages) for r in requests]
    print(json.dumps(report(texts, requests, prompt_tokens, first, results, stats, settings, extraction,
                            backend.dtype, tokens), indent=2))
    failed = [(text, n) for (text, n), r in zip(first, requests) if parse_answer(text, r.schema)[1]]
    for text, n in failed[: args.show]:
        print(f"--- {n} tokens:\n{text}")


if __name__ == "__main__":
    main()
