"""Snakemake adapter: every model's metrics in the cohort's subgroups, for one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

report_stages.subgroups(
    snakemake.params.runs,
    snakemake.input.cohort,
    snakemake.wildcards.task,
    snakemake.params.settings,
    snakemake.params.resamples,
    snakemake.params.level,
    snakemake.params.seed,
    snakemake.params.folds,
    snakemake.params.plotted,
    snakemake.output.csv,
    snakemake.output.markdown,
    snakemake.output.plot,
)
