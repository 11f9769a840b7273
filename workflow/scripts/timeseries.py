"""Snakemake adapter: hourly table and model inputs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.build_timeseries(
    snakemake.input.events,
    snakemake.input.cohort,
    snakemake.input.variables,
    snakemake.params.hours,
    snakemake.output.hourly,
    snakemake.output.features,
    snakemake.output.stats,
)
