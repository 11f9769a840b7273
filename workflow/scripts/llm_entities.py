"""Snakemake adapter: LLM entity extraction for one shard of the stays."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr.llm import stages  # noqa: E402

stages.llm_entities(
    snakemake.input.notes,
    snakemake.input.abbreviations,
    int(snakemake.wildcards.shard),
    snakemake.params.shards,
    snakemake.params.llm,
    snakemake.params.extraction,
    snakemake.params.cache_dir,
    snakemake.output.entities,
    snakemake.output.stats,
)
