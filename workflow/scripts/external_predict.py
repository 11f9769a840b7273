"""Snakemake adapter: a model developed on another dataset, applied to this one."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

report_stages.external_predictions(
    snakemake.input.model,
    snakemake.input.summary,
    snakemake.input.features,
    snakemake.input.get("embeddings"),
    snakemake.input.cohort,
    snakemake.wildcards.task,
    str(Path(snakemake.output.predictions).parent),
)
