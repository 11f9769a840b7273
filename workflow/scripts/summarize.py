"""Snakemake adapter: LLM summaries for one shard of the stays."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr.llm import stages  # noqa: E402

stages.summarize(
    snakemake.input.context,
    int(snakemake.wildcards.shard),
    snakemake.params.shards,
    snakemake.params.llm,
    snakemake.params.summary,
    snakemake.params.cache_dir,
    snakemake.output.summaries,
    snakemake.output.stats,
)
