"""Snakemake adapter: notes of the cohort stays."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.stay_notes(snakemake.input.notes, snakemake.input.cohort, snakemake.params.hours,
                  snakemake.params.readmission_definition, snakemake.output[0])
