"""Snakemake adapter: the cohort as a MEDS dataset."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.meds import export  # noqa: E402

export.export(
    snakemake.input.patients,
    snakemake.input.admissions,
    snakemake.input.icustays,
    snakemake.input.events,
    snakemake.input.cohort,
    snakemake.input.notes,
    snakemake.input.variables,
    snakemake.wildcards.dataset,
    snakemake.params.out_dir,
)
