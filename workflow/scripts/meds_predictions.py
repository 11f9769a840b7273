"""Snakemake adapter: one seed's predictions of a model in meds-evaluation's prediction schema."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.meds import predictions  # noqa: E402

predictions.write_predictions(
    snakemake.params.run,
    snakemake.input.labels,
    snakemake.input.stays,
    snakemake.output[0],
)
