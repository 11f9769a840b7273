"""Shared fixtures: paths to the repository and to the read-only reference data beside it; the MEDS tool
environment and MEDS-Extract's output on the MIMIC-IV demo (session-scoped: one MEDS-Extract run per session)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emerge_ehr.settings import schema_defaults

from kg_fixture import write_primekg_fixture

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIMIC4_DEMO = SHARED_DATA / "mimic-iv-demo-2.2"
VARIABLES_YAML = REPO / "config" / "variables.yaml"
# The configuration of the schema's defaults: the one source of every default, for settings built in unit tests
DEFAULTS = schema_defaults()


def train_settings(model: str = "gru", seed: int = 0, **values):
    """Training settings of the schema's defaults for ``model`` (the GRU unless named) and ``seed``."""
    from emerge_ehr.model.train_settings import TrainSettings

    return TrainSettings.from_config(DEFAULTS, model=model, seed=seed, **values)


@pytest.fixture(scope="session", autouse=True)
def public_resources(tmp_path_factory):
    """One between-workflow cache (Snakemake's --cache) and one PrimeKG fixture for every workflow run of the
    session: the public resources (the converted LLM, the graph, its index) are built once, not once per run, as a
    user's runs share them; tests of the cache itself set their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SNAKEMAKE_OUTPUT_CACHE", str(tmp_path_factory.mktemp("output-cache")))
        patch.setenv("EMERGE_TEST_PRIMEKG", str(write_primekg_fixture(tmp_path_factory.mktemp("primekg"))))
        yield


@pytest.fixture
def mimic4_demo() -> Path:
    if not (MIMIC4_DEMO / "icu" / "icustays.csv.gz").exists():
        pytest.skip(f"MIMIC-IV demo not found at {MIMIC4_DEMO} (see ../shared/data/README.md)")
    return MIMIC4_DEMO


@pytest.fixture(scope="session")
def tool_venv() -> Path:
    """.venv-meds (`make meds-tools`), or skip."""
    from emerge_ehr.meds import tools

    try:
        return tools.tool_venv()
    except tools.ToolError as err:
        pytest.skip(f"MEDS tool environment not built ({err})")


@pytest.fixture(scope="session")
def demo_meds(tmp_path_factory, tool_venv) -> Path:
    """MEDS-Extract's output on the MIMIC-IV demo (offline spec), made once per session, or skip."""
    from emerge_ehr.meds import tools

    if not (MIMIC4_DEMO / "icu" / "icustays.csv.gz").exists():
        pytest.skip(f"MIMIC-IV demo not found at {MIMIC4_DEMO} (see ../shared/data/README.md)")
    out = tmp_path_factory.mktemp("demo") / "meds"
    started = time.perf_counter()
    tools.meds_extract(MIMIC4_DEMO, out, dataset_key="demo", log=out.parent / "meds_extract.log")
    print(f"MEDS-Extract on the demo: {time.perf_counter() - started:.1f} s")
    return out


def copy_run(workdir: Path, to: Path) -> Path:
    """A copy of a run's working directory (results, logs, cache, Snakemake's records) to change in tests."""
    import shutil

    shutil.copytree(workdir, to, symlinks=True)
    config = to / "config.yaml"
    config.write_text(config.read_text().replace(str(workdir), str(to)))
    return to
