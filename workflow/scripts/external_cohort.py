"""Snakemake adapter: the test dataset's cohort for external validation (every stay a test stay)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import report_stages  # noqa: E402

report_stages.external_cohort(snakemake.input[0], snakemake.output[0])
