"""Snakemake adapter: gather the entities of every method."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.llm import stages  # noqa: E402

stages.gather_entities(list(snakemake.input), snakemake.output[0])
