"""Snakemake adapter: the FAISS index of node names and synonyms."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr import knowledge  # noqa: E402

knowledge.build_kg_index(
    nodes_path=snakemake.input.nodes,
    out_dir=Path(snakemake.output.index).parent,
    encoder_settings=snakemake.params.encoder,
    index_settings=snakemake.params.index,
    cache_dir=snakemake.config["cache_dir"],
)
