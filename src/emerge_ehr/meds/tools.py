"""Run the MEDS tools (MEDS-Extract, ACES) that live in their own environment, ``.venv-meds``.

ACES (es-aces) and MEDS-Extract need polars<2 while the workflow pins polars 2.x, so they are installed apart,
from requirements-meds.txt (``make meds-tools``), and run here as subprocesses. ``EMERGE_MEDS_VENV`` names another
environment. Every failure raises :class:`ToolError` saying what is missing or what the tool printed last.
Also here, run in the workflow's environment: ACES's labels read back as MEDS labels, and the task configs' one
criterion that ACES cannot express, no care-unit transfer, applied to them (``icu_stays``, ``label_stays``,
``no_transfer``).
See docs/meds.md.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[3]
VENV_VARIABLE = "EMERGE_MEDS_VENV"
DEFAULT_VENV = REPO / ".venv-meds"
TASKS_DIR = REPO / "config" / "tasks"
EXTRACT_SPEC = REPO / "config" / "meds" / "mimic4_extract_spec.yaml"
TAIL_LINES = 30
# Each task config's prediction time, from the ICU stay (config/tasks/*.yaml: the input window ends at ICU
# admission + 48 h; readmission's index is the ICU out-time).
PREDICTION_TIMES = {"mortality": pl.col("intime") + pl.duration(hours=48), "readmission": pl.col("outtime")}


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


def read_aces_labels(paths: list[Path]) -> pl.DataFrame:
    """ACES's labels (``aces_labels``' files) as MEDS labels: subject_id, prediction_time, boolean_value, validated
    with ``meds.LabelSchema`` (ACES's all-null integer/float/categorical columns, which fail it, are dropped)."""
    labels = pa.concat_tables([pq.read_table(p).select(["subject_id", "prediction_time", "boolean_value"])
                               for p in paths])
    meds.LabelSchema.validate(labels)
    return pl.from_arrow(labels)


def icu_stays(meds_root: str | Path) -> pl.DataFrame:
    """The ICU stays of a MEDS dataset in MEDS-Extract's MIMIC-IV codes (MEDS-Extract's output, or this workflow's
    export): ``ICU_ADMISSION//{unit}`` paired with ``ICU_DISCHARGE//{unit}`` through the ``icustay_id`` column.

    Columns: subject_id, hadm_id, stay_id, intime, first_careunit, outtime, last_careunit.
    """
    data = pl.scan_parquet(Path(meds_root) / "data" / "*" / "*.parquet")
    unit = pl.col("code").str.split("//").list.get(1)
    admissions = (data.filter(pl.col("code").str.starts_with("ICU_ADMISSION//"))
                  .select("subject_id", "hadm_id", pl.col("icustay_id").alias("stay_id"),
                          pl.col("time").alias("intime"), unit.alias("first_careunit")))
    discharges = (data.filter(pl.col("code").str.starts_with("ICU_DISCHARGE//"))
                  .select(pl.col("icustay_id").alias("stay_id"), pl.col("time").alias("outtime"),
                          unit.alias("last_careunit")))
    return admissions.join(discharges, on="stay_id").collect()


def label_stays(labels: pl.DataFrame, stays: pl.DataFrame, task: str) -> pl.DataFrame:
    """ACES's rows of config/tasks/{task}.yaml, each with its ICU stay (``icu_stays``' columns), joined by the
    prediction time the config gives it (``PREDICTION_TIMES``). Raises ValueError unless every row has exactly one
    stay and no stay two rows.

    >>> import datetime as dt
    >>> t = dt.datetime(2150, 1, 1)
    >>> stays = pl.DataFrame({"subject_id": [1, 1], "stay_id": [10, 11], "intime": [t, t + dt.timedelta(days=9)],
    ...     "outtime": [t + dt.timedelta(days=3), t + dt.timedelta(days=12)], "first_careunit": ["MICU", "MICU"],
    ...     "last_careunit": ["MICU", "SICU"]})
    >>> labels = pl.DataFrame({"subject_id": [1, 1], "prediction_time": [t + dt.timedelta(hours=48),
    ...     t + dt.timedelta(days=11)], "boolean_value": [False, True]})
    >>> no_transfer(label_stays(labels, stays, "mortality")).select("stay_id", "boolean_value").rows()
    [(10, False)]
    """
    if task not in PREDICTION_TIMES:
        raise ValueError(f"no prediction time known for task {task!r}; known: {', '.join(PREDICTION_TIMES)}")
    joined = labels.join(stays.with_columns(PREDICTION_TIMES[task].alias("prediction_time")),
                         on=["subject_id", "prediction_time"], how="left")
    unmatched = joined.filter(pl.col("stay_id").is_null()).height
    if unmatched or joined.height != labels.height or joined.get_column("stay_id").is_duplicated().any():
        raise ValueError(f"{task}: {unmatched} label row(s) match no ICU stay, or a row or stay matches twice")
    return joined


def no_transfer(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows (of ``label_stays``) whose ICU stay ended in the care unit it began in: the task configs' criterion
    that ACES cannot express, a comparison between the text of two events (config/tasks/mortality.yaml)."""
    return frame.filter(pl.col("first_careunit") == pl.col("last_careunit"))
