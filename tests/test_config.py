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
