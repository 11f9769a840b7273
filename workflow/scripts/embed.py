"""Snakemake adapter: text embeddings of one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr import knowledge  # noqa: E402

knowledge.embed(
    snakemake.input.notes,
    snakemake.input.get("summaries"),  # absent where summaries.method leaves that method out
    snakemake.input.get("knowledge"),
    snakemake.input.context,
    snakemake.input.cohort,
    snakemake.wildcards.task,
    snakemake.params.encoder,
    snakemake.params.chunk_words,
    snakemake.params.max_chunks,
    snakemake.params.max_nodes,
    snakemake.params.cache_dir,
    snakemake.output[0],
)
