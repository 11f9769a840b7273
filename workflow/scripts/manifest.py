"""Snakemake adapter: the run manifest of one dataset."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.reproducibility import write_manifest  # noqa: E402

write_manifest(
    config=snakemake.params.config,
    dataset=snakemake.wildcards.dataset,
    inputs=list(snakemake.params.sources),
    llm=snakemake.params.llm,
    encoder=snakemake.params.encoder,
    out=snakemake.output[0],
)
