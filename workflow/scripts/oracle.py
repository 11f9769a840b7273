"""Snakemake adapter: the oracle line of a synthetic dataset."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.oracle(
    snakemake.input.reference,
    snakemake.params.reference,
    snakemake.input.truth,
    snakemake.wildcards.task,
    snakemake.output.predictions,
    snakemake.output.summary,
)
