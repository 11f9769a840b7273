"""Snakemake adapter: lexicon entities of the notes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.lexicon_entities(
    snakemake.input.notes,
    snakemake.input.nodes,
    snakemake.input.abbreviations,
    snakemake.params.node_types,
    snakemake.output[0],
)
