"""Snakemake adapter: the FAISS index of node names and synonyms."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr import knowledge  # noqa: E402

knowledge.build_kg_index(
    snakemake.input.nodes,
    Path(snakemake.output.index).parent,
    snakemake.params.encoder,
    snakemake.params.index,
    snakemake.params.cache_dir,
)
