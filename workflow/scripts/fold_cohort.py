"""Snakemake adapter: the cohort of one cross-validation fold."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.fold_cohort(
    snakemake.input[0],
    snakemake.params.folds,
    int(snakemake.wildcards.fold),
    snakemake.params.val_share,
    snakemake.params.seed,
    snakemake.output[0],
)
