"""Snakemake adapter: the case studies of one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

report_stages.explanation_report(
    dict(zip(snakemake.params.models, snakemake.input.explanations)),
    list(snakemake.input.contexts),
    snakemake.input.notes,
    snakemake.wildcards.task,
    snakemake.params.settings,
    snakemake.params.chunking,
    snakemake.output.markdown,
    snakemake.output.plot,
)
