"""Snakemake adapter: train one model for one task and seed."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.train(
    snakemake.input.features,
    snakemake.input.get("embeddings") or None,
    snakemake.input.cohort,
    snakemake.wildcards.task,
    snakemake.params.settings,
    Path(snakemake.output.model).parent,
    snakemake.threads,
)
