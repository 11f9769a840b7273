"""Which outputs of two runs differ, and by how much: every file under two results folders (a dataset's
``results/{dataset}`` of two working directories, or two whole ``results/``), the manifest aside.

    .venv/bin/python bench/compare_runs.py runA/results/demo runB/results/demo

Prints a Markdown table (file, how many cells, leaves, elements or lines differ, the largest absolute difference)
and exits with 1 when any file differs. On one machine, two runs of one configuration are byte for byte the same
(tests/test_reproducibility.py); between machines, or bfloat16 and float32, the table says how far apart they are
(docs/PERFORMANCE.md, "Reproducibility").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emerge_ehr.reproducibility import MANIFEST, compare, comparison_markdown  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="a results folder")
    parser.add_argument("b", help="the other")
    args = parser.parse_args(argv)
    rows = compare(args.a, args.b)
    files = sum(1 for p in Path(args.a).rglob("*") if p.is_file() and p.name != MANIFEST)
    print(comparison_markdown(rows, args.a, args.b, files), end="")
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
