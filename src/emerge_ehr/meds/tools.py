"""Run the MEDS tools (MEDS-Extract, ACES) that live in their own environment, ``.venv-meds``.

ACES (es-aces) and MEDS-Extract need polars<2 while the workflow pins polars 2.x, so they are installed apart,
from requirements-meds.txt (``make meds-tools``), and run here as subprocesses. ``EMERGE_MEDS_VENV`` names another
environment. Every failure raises :class:`ToolError` saying what is missing or what the tool printed last.
See docs/meds.md.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
VENV_VARIABLE = "EMERGE_MEDS_VENV"
DEFAULT_VENV = REPO / ".venv-meds"
TASKS_DIR = REPO / "config" / "tasks"
EXTRACT_SPEC = REPO / "config" / "meds" / "mimic4_extract_spec.yaml"
TAIL_LINES = 30


class ToolError(RuntimeError):
    """A MEDS tool is missing or failed."""


def tool_venv(venv: str | Path | None = None) -> Path:
    """The tool environment: ``venv``, else $EMERGE_MEDS_VENV, else the repository's .venv-meds (or, where this
    package is not installed from the repository, ./.venv-meds)."""
    here = Path.cwd() / ".venv-meds"
    default = here if not DEFAULT_VENV.exists() and here.exists() else DEFAULT_VENV
    path = Path(venv or os.environ.get(VENV_VARIABLE) or default)
    if not (path / "bin" / "python").exists():
        raise ToolError(
            f"the MEDS tool environment is missing: no {path}/bin/python. Build it with `make meds-tools`"
            f" (requirements-meds.txt), or set {VENV_VARIABLE} to an environment that has it"
        )
    return path


def hydra_value(value: str | Path) -> str:
    """A path as a quoted Hydra override value, so that commas, spaces or '=' in it are not read as syntax."""
    escaped = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def run_tool(
    command: str, args: list[str], *, venv: str | Path | None = None, log: str | Path | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the environment's commands; its output (stdout and stderr) goes to ``log`` when given.

    The environment's bin/ comes first on PATH: meds-extract-run starts its stages by name through the shell.
    """
    bin_dir = tool_venv(venv) / "bin"
    executable = bin_dir / command
    if not executable.exists():
        raise ToolError(f"{command} is not in {bin_dir}: rebuild the environment with `make meds-tools`")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent)}
    result = subprocess.run(
        [str(executable), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace",
    )
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(result.stdout)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-TAIL_LINES:])
        where = f" (full output in {log})" if log is not None else ""
        raise ToolError(f"{command} failed with exit code {result.returncode}{where}; its last lines:\n{tail}")
    return result


def meds_extract(
    input_dir: str | Path, output_dir: str | Path, *, spec: str | Path = EXTRACT_SPEC, dataset_key: str = "dataset",
    venv: str | Path | None = None, log: str | Path | None = None,
) -> Path:
    """MEDS-Extract on a MIMIC-IV download (``input_dir`` with hosp/ and icu/, read only) into ``output_dir``.

    ``spec`` defaults to the offline spec (config/meds/mimic4_extract_spec.yaml), which downloads nothing;
    ``dataset_key`` is ``demo`` for the MIMIC-IV demo (it only sets the version stamped in dataset.json).
    """
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    missing = [name for name in ("hosp", "icu") if not (input_dir / name).is_dir()]
    if missing:
        raise ToolError(f"{input_dir} is not a MIMIC-IV folder: no {' or '.join(f'{m}/' for m in missing)} in it")
    run_tool(
        "meds-extract-run",
        [f"spec={hydra_value(Path(spec).resolve())}", f"input_dir={hydra_value(input_dir)}",
         f"output_dir={hydra_value(output_dir)}", "do_download=false", f"dataset_key={dataset_key}"],
        venv=venv, log=log,
    )
    return output_dir


def shards(meds_root: str | Path) -> list[str]:
    """The data shards of a MEDS dataset, as ACES names them (``train/0``), sorted."""
    data = Path(meds_root) / "data"
    return sorted(str(p.relative_to(data).with_suffix("")) for p in data.rglob("*.parquet"))


def aces_labels(
    task_config: str | Path, meds_root: str | Path, cohort_dir: str | Path, *, name: str | None = None,
    venv: str | Path | None = None, log: str | Path | None = None,
) -> list[Path]:
    """ACES's labels of one task config on every shard of a MEDS dataset (one aces-cli run, a Hydra multirun).

    Writes ``cohort_dir/name/<shard>.parquet`` (subject_id, prediction_time, boolean_value, and ACES's null
    integer_value, float_value, categorical_value columns) and returns those paths. ``name`` defaults to the
    config's stem. ACES also writes its logs under ``cohort_dir/name/.logs``.
    """
    task_config, meds_root, cohort_dir = (Path(p).resolve() for p in (task_config, meds_root, cohort_dir))
    if not task_config.exists():
        raise ToolError(f"no ACES task config at {task_config}")
    found = shards(meds_root)
    if not found:
        raise ToolError(f"no data shards (data/*/*.parquet) in the MEDS dataset {meds_root}")
    name = name or task_config.stem
    cohort_dir.mkdir(parents=True, exist_ok=True)
    run_tool(
        "aces-cli",
        ["-m", f"config_path={hydra_value(task_config)}", f"cohort_dir={hydra_value(cohort_dir)}",
         f"cohort_name={name}", "data=sharded", "data.standard=meds", f"data.root={hydra_value(meds_root / 'data')}",
         "data.shard=" + ",".join(found)],
        venv=venv, log=log, cwd=cohort_dir,
    )
    outputs = [cohort_dir / name / f"{shard}.parquet" for shard in found]
    absent = [str(p) for p in outputs if not p.exists()]
    if absent:
        raise ToolError(f"aces-cli ran but wrote no labels at {', '.join(absent)}")
    return outputs
