"""One source of defaults: config/schema.yaml fills every setting config/config.yaml leaves out, with the same
values, so that a user's own config file (``--configfile my.yaml --replace-workflow-config``) runs the demo's
settings wherever it says nothing."""

from __future__ import annotations

import copy

import yaml
from snakemake.utils import validate

from conftest import REPO

SCHEMA = REPO / "config" / "schema.yaml"


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_schema_defaults_are_the_default_config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    only_datasets = {"datasets": copy.deepcopy(config["datasets"])}
    validate(only_datasets, str(SCHEMA))
    validate(config, str(SCHEMA))
    disagree = {key: (value, _leaves(only_datasets).get(key)) for key, value in _leaves(config).items()
                if _leaves(only_datasets).get(key) != value}
    assert not disagree, f"config.yaml (left) and schema.yaml defaults (right) disagree: {disagree}"


def test_a_setting_left_out_gets_its_default_and_a_wrong_one_names_itself():
    import pytest
    from snakemake.exceptions import WorkflowError

    config = {"datasets": {"demo": {"kind": "synthetic"}}, "train": {"schedule": "staged"}}
    validate(config, str(SCHEMA))
    assert config["train"]["patience"] == 10 and "emerge_knowledge" in config["models"]
    with pytest.raises(WorkflowError, match="schedule"):
        validate({"datasets": {"demo": {"kind": "synthetic"}}, "train": {"schedule": "sometimes"}}, str(SCHEMA))


def test_every_shipped_run_configuration_is_valid():
    """The configurations users start from (the evidence run, the full MIMIC-IV one) pass the schema as shipped."""
    shipped = [p for p in (REPO / "config").glob("*.yaml") if p.name not in ("schema.yaml", "variables.yaml",
               "abbreviations.yaml", "abnormal_phenotypes.yaml")]
    assert {p.name for p in shipped} >= {"config.yaml", "evidence.yaml", "mimic4-full.yaml"}
    for path in shipped:
        validate(yaml.safe_load(path.read_text()), str(SCHEMA))


def test_settings_classes_have_no_defaults_of_their_own_and_build_from_the_schemas():
    """One source of defaults: every settings class the workflow builds from the configuration takes each value
    from it (its fields have no defaults), and builds from the schema's defaults alone."""
    from dataclasses import MISSING, fields

    from emerge_ehr.data.cohort import CohortSettings
    from emerge_ehr.kg.align import AlignSettings
    from emerge_ehr.kg.index import IndexSettings
    from emerge_ehr.kg.retrieve import RetrieveSettings
    from emerge_ehr.llm.backends import LLMSettings
    from emerge_ehr.llm.extract import ExtractionSettings
    from emerge_ehr.llm.summarize import SummarySettings
    from emerge_ehr.model.train_settings import TrainSettings
    from emerge_ehr.settings import schema_defaults
    from emerge_ehr.text.encoder import EncoderSettings

    config = schema_defaults()
    classes = [CohortSettings, AlignSettings, IndexSettings, RetrieveSettings, LLMSettings, ExtractionSettings,
               SummarySettings, EncoderSettings]
    for cls in [*classes, TrainSettings]:
        assert [f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING] == [], cls
    built = {cls.__name__: cls.from_config(config) for cls in classes}
    assert built["AlignSettings"].threshold == 0.8 and built["SummarySettings"].max_tokens == 96
    assert built["SummarySettings"].max_summary_chars == 300 and built["CohortSettings"].split_seed == 42
    assert TrainSettings.from_config(config, model="gru", seed=0).text_dropout == 0.25


def test_a_models_own_settings_take_the_rest_from_the_default_entry_not_from_the_schema():
    from emerge_ehr.model.train_settings import TrainSettings
    from emerge_ehr.settings import complete

    config = complete({"datasets": {"demo": {"kind": "synthetic"}},
                       "model_settings": {"default": {"dropout": 0.1}, "gru": {"hidden_size": 64}}})
    gru = TrainSettings.from_config(config, model="gru", seed=0)
    assert (gru.hidden_size, gru.dropout) == (64, 0.1)  # the user's default dropout, not the schema's 0.25
    assert TrainSettings.from_config(config, model="lstm", seed=0).hidden_size == 128
