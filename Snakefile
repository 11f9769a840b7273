"""EMERGE: retrieval-augmented multimodal EHR prediction. Stages live in workflow/rules/*.smk."""

import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "src"))


configfile: REPO / "config/config.yaml"


validate(config, REPO / "config/schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/synthesize.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/timeseries.smk"
include: "workflow/rules/notes.smk"
include: "workflow/rules/llm_model.smk"
include: "workflow/rules/kg.smk"
include: "workflow/rules/kg_index.smk"
include: "workflow/rules/abnormal.smk"
include: "workflow/rules/entities.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/retrieve.smk"
include: "workflow/rules/summarize.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/scarcity.smk"
include: "workflow/rules/folds.smk"
include: "workflow/rules/meds.smk"
include: "workflow/rules/manifest.smk"


rule all:
    input:
        all_targets(),
    default_target: True
