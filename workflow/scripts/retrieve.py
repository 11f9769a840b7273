"""Snakemake adapter: retrieve each stay's knowledge context."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.retrieve(
    snakemake.input.entities,
    snakemake.input.notes,
    snakemake.input.abnormal,
    snakemake.input.aligned,
    snakemake.input.nodes,
    snakemake.input.edges,
    snakemake.input.cohort,
    snakemake.params.tasks,
    snakemake.params.settings,
    snakemake.output[0],
)
