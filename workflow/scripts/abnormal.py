"""Snakemake adapter: abnormal time-series features."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.abnormal(
    snakemake.input.events, snakemake.input.cohort, snakemake.input.terms, snakemake.params.threshold, snakemake.output[0],
    snakemake.input.get("source_events"), snakemake.input.get("source_cohort"),  # external validation only
)
