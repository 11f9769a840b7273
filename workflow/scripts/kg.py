"""Snakemake adapter: build the knowledge graph."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.build_kg(
    snakemake.params.kind,
    snakemake.params.root,
    Path(snakemake.output.nodes).parent,
    snakemake.params.max_icd_codes,
)
