"""Snakemake adapter: the cohort with labels and split."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.cohort(
    snakemake.input.patients,
    snakemake.input.admissions,
    snakemake.input.icustays,
    snakemake.input.events,
    snakemake.params.settings,
    snakemake.output.cohort,
    snakemake.output.meta,
    snakemake.params.labels,
    snakemake.params.hours,
)
