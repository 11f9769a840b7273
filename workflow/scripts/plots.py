"""Snakemake adapter: ROC, precision-recall and calibration plots of one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr.evaluate.plots import plot_task  # noqa: E402

plot_task(
    snakemake.wildcards.task,
    snakemake.params.runs,
    snakemake.output.roc,
    snakemake.output.pr,
    snakemake.output.calibration,
)
