"""Shared fixtures: paths to the repository and to the read-only reference data beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIMIC4_DEMO = SHARED_DATA / "mimic-iv-demo-2.2"
VARIABLES_YAML = REPO / "config" / "variables.yaml"


@pytest.fixture
def mimic4_demo() -> Path:
    if not (MIMIC4_DEMO / "icu" / "icustays.csv.gz").exists():
        pytest.skip(f"MIMIC-IV demo not found at {MIMIC4_DEMO} (see ../shared/data/README.md)")
    return MIMIC4_DEMO
