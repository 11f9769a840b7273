"""The reproducibility contract: one configuration run twice from scratch on one machine, or killed part-way and
resumed, gives the same outputs byte for byte, the run manifest aside; what differs between two runs is listed
with how much (bench/compare_runs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from emerge_ehr.reproducibility import MANIFEST, compare, comparison_markdown, config_sha256

from conftest import REPO


def _results(root, probability: float, vector: float, summary: str) -> None:
    root.mkdir(parents=True)
    pl.DataFrame({"stay_id": [1, 2], "probability": [0.25, probability]}).write_parquet(root / "predictions.parquet")
    np.savez(root / "embeddings.npz", notes=np.array([[1.0, vector]], np.float32), mask=np.array([True]))
    (root / "metrics.json").write_text(json.dumps({"auroc": {"value": probability, "ci": [0.1, 0.9]}, "n": 2}))
    (root / "summary.md").write_text(f"| model | AUROC |\n| gru | {summary} |\n")
    (root / MANIFEST).write_text(json.dumps({"written": str(time.time())}))


def test_two_identical_results_folders_compare_equal_the_manifest_aside(tmp_path):
    _results(tmp_path / "a", 0.75, 2.0, "75.0")
    _results(tmp_path / "b", 0.75, 2.0, "75.0")
    assert compare(tmp_path / "a", tmp_path / "b") == []
    assert "byte for byte the same" in comparison_markdown([], "a", "b", 4)


def test_differing_outputs_are_listed_with_how_much_they_differ(tmp_path):
    _results(tmp_path / "a", 0.75, 2.0, "75.0")
    _results(tmp_path / "b", 0.7501, 2.5, "75.01")
    (tmp_path / "a" / "only_here.txt").write_text("x")
    rows = {row["path"]: row for row in compare(tmp_path / "a", tmp_path / "b")}
    assert rows["only_here.txt"]["status"] == "only in a"
    assert rows["predictions.parquet"]["differing"] == 1 and rows["predictions.parquet"]["of"] == 4
    assert rows["predictions.parquet"]["max_abs"] == pytest.approx(1e-4)
    assert rows["embeddings.npz"]["differing"] == 1 and rows["embeddings.npz"]["max_abs"] == 0.5
    assert rows["metrics.json"]["differing"] == 1 and rows["metrics.json"]["max_abs"] == pytest.approx(1e-4)
    assert rows["summary.md"]["differing"] == 1 and rows["summary.md"]["unit"] == "lines"
    assert MANIFEST not in rows
    table = comparison_markdown(list(rows.values()), "a", "b", 5)
    assert "| predictions.parquet | differs | 1  | 4 | 0.0001 |" in table
    cli = subprocess.run([sys.executable, str(REPO / "bench" / "compare_runs.py"), str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True)
    assert cli.returncode == 1 and "5 of 5 files differ" in cli.stdout


def test_the_config_hash_ignores_key_order_and_sees_every_value():
    assert config_sha256({"a": {"b": 1, "c": 2}}) == config_sha256({"a": {"c": 2, "b": 1}})
    assert config_sha256({"a": {"b": 1}}) != config_sha256({"a": {"b": 2}})


def test_the_manifest_names_versions_machine_formats_models_and_hashes_the_inputs(tmp_path):
    from emerge_ehr.reproducibility import file_sha256, write_manifest
    from emerge_ehr.settings import schema_defaults

    config = schema_defaults()
    source = tmp_path / "patients.csv.gz"
    source.write_bytes(b"subject_id\n1\n")
    llm = config["llm"] | {"backend": "openai", "model": "served-model"}
    write_manifest(config, "demo", [str(source)], llm, config["text_encoder"], tmp_path / MANIFEST)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["config_sha256"] == config_sha256(config) and manifest["dataset"] == "demo"
    assert manifest["inputs"] == {str(source): file_sha256(source)}
    assert {"torch", "polars", "python"} <= set(manifest["packages"])
    assert manifest["machine"]["cpu"]["cores"] >= 1 and isinstance(manifest["machine"]["gpus"], list)
    assert manifest["number_formats"]["text_encoder"]["format"] in ("float32", "bfloat16")
    assert manifest["models"]["llm"] == "openai:served-model" and len(manifest["models"]["text_encoder"]) == 16
