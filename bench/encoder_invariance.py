"""Does a text's vector depend on the other texts of its encoder call, and what does preventing it cost?
(docs/PERFORMANCE.md, "Reproducibility")

Note-like texts (sentences of a synthetic cohort's notes, joined into chunks of about 40 to 250 tokens) and short
names (their first few words, as entity names are), embedded by the default encoder in two ways:
- ``batched``: sentence-transformers' own ``encode`` (calls of ``--batch`` texts padded to the longest of the call),
  as the workflow embedded before: a text's call shape depends on which texts share its call;
- ``fixed``: the workflow's ``TextEncoder.encode`` (src/emerge_ehr/text/encoder.py): each text in a call whose shape
  its own token count fixes.
For each, ``--probe`` texts are embedded again one at a time and among the others, and the vectors compared bit for
bit; then the seconds to embed every text once.

    .venv/bin/python bench/encoder_invariance.py --dtype bfloat16
    .venv/bin/python bench/encoder_invariance.py --dtype float32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.data.synthetic import generate  # noqa: E402
from emerge_ehr.settings import schema_defaults  # noqa: E402
from emerge_ehr.text.encoder import EncoderSettings, TextEncoder  # noqa: E402


def texts(chunks: int, names: int, seed: int) -> tuple[list[str], list[str]]:
    """Note-like chunks of 2 to 12 sentences and short names of 2 to 5 words, from a synthetic cohort's notes."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, "mimic4", n_patients=200, seed=seed)
        notes = pl.read_csv(Path(tmp) / "note" / "discharge.csv.gz", infer_schema_length=0).get_column("text")
    sentences = [s.strip() for note in notes for s in note.replace("\n", " ").split(". ") if len(s.split()) > 2]
    chunk_texts = [". ".join(rng.choice(sentences, rng.integers(2, 13))) for _ in range(chunks)]
    name_texts = [" ".join(s.split()[: rng.integers(2, 6)]) for s in rng.choice(sentences, names)]
    return chunk_texts, name_texts


def batched(encoder: TextEncoder, batch: int):
    return lambda items: encoder.model.encode(items, batch_size=batch, normalize_embeddings=True,
                                              convert_to_numpy=True).astype(np.float32)


def invariance(embed, items: list[str], probe: int) -> tuple[int, int]:
    """(identical alone, identical among others) of ``probe`` texts against their vectors in the full call."""
    together = embed(items)
    alone = np.stack([embed([items[i]])[0] for i in range(probe)])
    shifted = embed(items[probe // 2:] + items[: probe // 2])  # other call-mates for every text
    among = np.concatenate([shifted[len(items) - probe // 2:], shifted[: probe - probe // 2]])
    same_alone = int(sum(np.array_equal(alone[i], together[i]) for i in range(probe)))
    same_among = int(sum(np.array_equal(among[i], together[i]) for i in range(probe)))
    return same_alone, same_among


def seconds(embed, items: list[str]) -> float:
    started = time.perf_counter()
    embed(items)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--chunks", type=int, default=1500)
    parser.add_argument("--names", type=int, default=6000)
    parser.add_argument("--probe", type=int, default=150)
    parser.add_argument("--batch", type=int, default=64, help="texts per call of the batched way")
    parser.add_argument("--batch-tokens", type=int, help="the fixed way's tokens per call (default: the schema's)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    chosen = {"batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    encoder = TextEncoder(EncoderSettings.from_config(schema_defaults(), device="cpu", dtype=args.dtype, **chosen))
    ways = {"batched": batched(encoder, args.batch), "fixed": encoder.encode}
    chunk_texts, name_texts = texts(args.chunks, args.names, args.seed)
    print(f"encoder in {encoder.dtype}, fixed calls of {encoder.settings.batch_tokens} tokens; {args.probe} probe texts"
          " of each kind\n")
    print("| texts | way | identical alone | identical among others | seconds for all | texts |")
    print("|---|---|---|---|---|---|")
    for kind, items in (("note-like chunks", chunk_texts), ("short names", name_texts)):
        for way, embed in ways.items():
            alone, among = invariance(embed, items, args.probe)
            print(f"| {kind} | {way} | {alone}/{args.probe} | {among}/{args.probe} | {seconds(embed, items):.1f} |"
                  f" {len(items)} |")


if __name__ == "__main__":
    main()
