"""Snakemake adapter: convert one source table (or a MEDS dataset's events) into canonical Parquet."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.convert(
    snakemake.params.root, snakemake.params.layout, snakemake.wildcards.table, snakemake.output[0],
    snakemake.params.notes_root, snakemake.params.meds,
)
