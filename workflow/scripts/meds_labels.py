"""Snakemake adapter: one task's labels in MEDS's label schema, and the stays they belong to."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.meds import predictions  # noqa: E402

predictions.write_labels(
    snakemake.input[0],
    snakemake.wildcards.task,
    snakemake.params.hours,
    snakemake.params.readmission_definition,
    snakemake.output.labels,
    snakemake.output.stays,
)
