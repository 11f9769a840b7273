"""Snakemake adapter: download PrimeKG from the configured addresses."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.download_kg(
    snakemake.params.kg_url, snakemake.params.disease_features_url, Path(snakemake.output.kg).parent
)
