"""Snakemake adapter: align entities and abnormal features to KG nodes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0], fast_allocator=True)
from emerge_ehr import knowledge  # noqa: E402

knowledge.align(
    snakemake.input.entities,
    snakemake.input.abnormal,
    snakemake.input.nodes,
    str(Path(snakemake.input.index).parent),
    snakemake.params.encoder,
    snakemake.params.align,
    snakemake.params.cache_dir,
    snakemake.output[0],
)
