"""Entity-extraction throughput: the raw vLLM engine against the pipeline's LLM stage, on the same prompts.

Builds the extraction prompts of synthetic MIMIC-IV notes exactly as the ``llm_entities`` stage does, then
times, each in a fresh process (one engine per process, as in the pipeline):

- ``raw``: one ``LLM.chat`` call over all prompts, with or without the answer schema (structured output);
- ``stage``: the stage's runner (answer cache, batches of ``llm.batch_size``, validation, retries) through
  the pipeline's vLLM backend, with an empty cache.

Engine start is timed apart from generation. Engine options are set from the command line so that each one
can be measured on its own (number format, eager or compiled, prefix caching, KV block size, batch size,
the preloaded allocator)::

    .venv/bin/python bench/llm_throughput.py --dtype float32 --prompts 128
    .venv/bin/python bench/llm_throughput.py --dtype float32 --modes raw --no-structured
    .venv/bin/python bench/llm_throughput.py --dtype float32 --compile --modes stage

``--dtype auto`` resolves as the pipeline does (``llm.dtype: auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from emerge_ehr.settings import schema_defaults  # noqa: E402

DEFAULTS = schema_defaults()

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MODEL = REPO / "resources" / "models" / "smollm2-135m-instruct"


def extraction_prompts(n: int, workdir: Path, max_tokens: int | None = None):
    """The first ``n`` extraction requests of a small synthetic MIMIC-IV database's notes."""
    import polars as pl

    from emerge_ehr.data.synthetic import generate
    from emerge_ehr.llm.extract import ExtractionSettings, extraction_requests

    root = workdir / "synthetic"
    if not (root / "synthetic_manifest.json").exists():
        generate(root, "mimic4", n_patients=max(50, n // 2), seed=3)
    notes = pl.concat([pl.read_csv(p, columns=["note_id", "text"]) for p in sorted(root.rglob("note/*.csv.gz"))])
    settings = ExtractionSettings.from_config(DEFAULTS, **({"max_tokens": max_tokens} if max_tokens else {}))
    requests, _ = extraction_requests(notes.head(n * 2), settings, 2048)
    if len(requests) < n:
        raise SystemExit(f"only {len(requests)} prompts in the synthetic notes; ask for fewer")
    return requests[:n]


def measure(args) -> dict:
    """One configuration in this process: engine start, then generation over all prompts."""
    from emerge_ehr.hardware import choose_format
    from emerge_ehr.llm.backends import LLMSettings, VLLMBackend, engine_options, llm_device

    requests = extraction_prompts(args.prompts, Path(args.workdir), args.max_tokens)
    dtype, _ = choose_format(args.dtype, llm_device())
    settings = LLMSettings.from_config(DEFAULTS, model=str(args.model), dtype=args.dtype, batch_size=args.batch_size,
                           compile=args.compile, workdir=str(Path(args.workdir) / "runtime"))
    started = time.perf_counter()
    if args.mode == "raw":
        from vllm import LLM, SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs, env = engine_options(settings, llm_device())
        os.environ.update({k: v for k, v in env.items() if k not in os.environ})
        if args.prefix_caching is not None:
            kwargs["enable_prefix_caching"] = args.prefix_caching
        if args.block_size:
            kwargs["block_size"] = args.block_size
        engine = LLM(model=str(args.model), dtype=dtype, max_model_len=2048, seed=0, **kwargs)
        start_seconds = time.perf_counter() - started
        params = [SamplingParams(temperature=0.0, max_tokens=r.max_tokens,
                                 structured_outputs=StructuredOutputsParams(json=r.schema) if args.structured else None)
                  for r in requests]
        started = time.perf_counter()
        outputs = engine.chat([r.messages for r in requests], sampling_params=params, use_tqdm=False)
        seconds = time.perf_counter() - started
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        prompt_tokens = sum(len(o.prompt_token_ids) for o in outputs)
        calls = len(requests)
    else:
        from emerge_ehr.llm.cache import AnswerCache
        from emerge_ehr.llm.runner import run

        backend = VLLMBackend(settings, "bench")
        backend.start()
        start_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as scratch:
            cache = AnswerCache(Path(scratch) / "answers", writer="bench")
            _, stats = run(requests, backend, cache, settings, "bench")
            cache.close()
        seconds, tokens, calls, prompt_tokens = stats.seconds, stats.generated_tokens, stats.calls, None
    return {"mode": args.mode, "dtype": dtype, "structured": args.structured, "compile": args.compile,
            "batch_size": args.batch_size, "prefix_caching": args.prefix_caching, "block_size": args.block_size, "prompts": len(requests),
            "calls": calls, "engine_start_s": round(start_seconds, 1), "seconds": round(seconds, 1),
            "prompts_per_s": round(len(requests) / seconds, 3), "generated_tokens_per_s": round(tokens / seconds, 1),
            "generated_tokens": tokens, "prompt_tokens": prompt_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="model directory (default: the pipeline's)")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--modes", nargs="+", default=["raw", "stage"], choices=["raw", "stage"])
    parser.add_argument("--batch-size", type=int, default=64, help="the stage's prompts per engine call")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (llm.compile: true)")
    parser.add_argument("--no-structured", dest="structured", action="store_false", help="raw: no answer schema")
    parser.add_argument("--prefix-caching", type=lambda s: s == "on", default=None, help="raw: on | off")
    parser.add_argument("--block-size", type=int, help="raw: KV-cache block size (tokens)")
    parser.add_argument("--max-tokens", type=int, help="answer length instead of llm_entities.max_tokens (1: prefill only)")
    parser.add_argument("--no-preload", dest="preload", action="store_false",
                        help="glibc malloc instead of the preloaded tcmalloc/mimalloc of the pipeline's LLM jobs")
    parser.add_argument("--workdir", default=str(REPO / "resources" / "bench" / "llm"))
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one measurement, in the child process
    args = parser.parse_args()
    if not args.model.exists():
        raise SystemExit(f"{args.model} is missing: run `snakemake --cores 1 {MODEL.relative_to(REPO)}` first")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.mode:
        from emerge_ehr.runtime import PRELOADED, preload_allocator

        if args.preload:
            preload_allocator()  # as the pipeline's LLM jobs do
        print("RESULT " + json.dumps(measure(args) | {"malloc": os.environ.get(PRELOADED, "glibc")}), flush=True)
        return
    extraction_prompts(args.prompts, Path(args.workdir))  # generated once, outside the timed children
    for mode in args.modes:
        child = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        out = subprocess.run(child, capture_output=True, text=True, env=os.environ | {"VLLM_CONFIGURE_LOGGING": "0"})
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not lines:
            raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
        print(lines[-1].removeprefix("RESULT "), flush=True)


if __name__ == "__main__":
    main()
