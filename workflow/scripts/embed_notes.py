"""Snakemake adapter: one shard of the note-chunk embeddings, into the embedding cache."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr import knowledge  # noqa: E402

knowledge.embed_notes(
    snakemake.input.notes,
    snakemake.params.tasks,
    snakemake.params.encoder,
    snakemake.params.chunk_words,
    snakemake.params.max_chunks,
    int(snakemake.wildcards.shard),
    snakemake.params.shards,
    snakemake.params.cache_dir,
    snakemake.output[0],
)
