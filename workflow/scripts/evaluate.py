"""Snakemake adapter: test-set metrics of one model over its seeds."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.evaluate(
    snakemake.params.runs,
    snakemake.wildcards.task,
    snakemake.wildcards.model,
    snakemake.params.resamples,
    snakemake.params.level,
    snakemake.params.seed,
    snakemake.output[0],
    snakemake.params.reference_runs,
    snakemake.params.reference,
)
