"""Snakemake adapter: the ablation claims of this run's models."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import stages  # noqa: E402

stages.ablations(
    f"results/{snakemake.wildcards.dataset}",
    snakemake.params.tasks,
    snakemake.params.models,
    snakemake.params.folds,
    snakemake.params.seeds,
    snakemake.params.resamples,
    snakemake.params.level,
    snakemake.params.seed,
    snakemake.params.scarcity,
    snakemake.output[0],
)
