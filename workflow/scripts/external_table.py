"""Snakemake adapter: the external-validation table of one (development, test) pair."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

keys = [f"{task}/{model}" for task in snakemake.params.tasks for model in snakemake.params.models]
report_stages.external_table(
    snakemake.wildcards.source,
    snakemake.wildcards.dataset,
    snakemake.params.tasks,
    snakemake.params.models,
    dict(zip(keys, snakemake.input.external)),
    dict(zip(keys, snakemake.input.internal)),
    dict(zip(keys, snakemake.input.development)),
    snakemake.input.stats,
    snakemake.params.level,
    snakemake.output.markdown,
    snakemake.output.csv,
)
