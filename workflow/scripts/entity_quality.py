"""Snakemake adapter: extraction quality against the synthetic ground truth."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.llm import stages  # noqa: E402

stages.entity_quality(
    snakemake.input.entities,
    snakemake.input.truth,
    snakemake.input.cohort,
    snakemake.input.abbreviations,
    snakemake.output.json,
    snakemake.output.markdown,
)
