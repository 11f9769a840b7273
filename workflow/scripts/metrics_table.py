"""Snakemake adapter: the comparison tables of all models."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.metrics_table(
    list(snakemake.input),
    snakemake.params.models,
    snakemake.params.tasks,
    snakemake.params.reference,
    snakemake.params.level,
    snakemake.output.markdown,
    snakemake.output.csv,
    snakemake.output.paper_markdown,
    snakemake.output.paper_csv,
)
