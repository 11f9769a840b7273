"""Snakemake adapter: the test dataset's features with the development dataset's statistics."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

report_stages.external_timeseries(
    snakemake.input.hourly,
    snakemake.input.cohort,
    snakemake.input.variables,
    snakemake.params.hours,
    snakemake.input.source_stats,
    snakemake.output.features,
    snakemake.output.stats,
)
