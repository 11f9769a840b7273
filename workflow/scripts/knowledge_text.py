"""Snakemake adapter: the retrieved knowledge of each stay and task as text, without an LLM."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from emerge_ehr.runtime import start_job  # noqa: E402

start_job(snakemake.threads, snakemake.log[0])
from emerge_ehr import knowledge  # noqa: E402

knowledge.knowledge_texts(snakemake.input.context, snakemake.params.encoder_model, snakemake.output[0])
