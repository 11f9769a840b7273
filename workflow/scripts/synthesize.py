"""Snakemake adapter: generate a synthetic MIMIC-format database."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.synthesize(
    Path(snakemake.output.truth).parent,
    snakemake.params.layout,
    snakemake.params.patients,
    snakemake.params.seed,
    snakemake.params.variables,
    snakemake.params.header_case,
)
