"""Snakemake adapter: the model card of one dataset."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

tasks = snakemake.params.settings["tasks"]
report_stages.model_card(
    snakemake.wildcards.dataset,
    snakemake.params.settings,
    snakemake.input.cohort_meta,
    snakemake.input.cohort,
    snakemake.input.hourly,
    list(snakemake.input.metrics),
    dict(zip(tasks, snakemake.input.subgroups)),
    dict(zip(tasks, snakemake.input.decisions)),
    list(snakemake.input.external),
    snakemake.output[0],
)
