"""Snakemake adapter: events of the time-series window."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.events(
    snakemake.input.chartevents,
    snakemake.input.labevents or None,
    snakemake.input.patients,
    snakemake.input.admissions,
    snakemake.input.icustays,
    snakemake.input.variables,
    snakemake.params.hours,
    snakemake.params.settings,
    snakemake.output[0],
)
