"""Settings from the configuration, with one source of defaults: config/schema.yaml.

The settings classes (``TrainSettings``, ``LLMSettings``, ...) have no defaults of their own: the workflow builds
them from the validated configuration, whose every default the schema fills, and the unit tests from the schema's
defaults (``schema_defaults``), so that a default changed in the schema is the one that both use.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"

T = TypeVar("T")


def _with_defaults(validator_class):
    """A validator class that fills each property's default before validating it (as Snakemake's ``validate``)."""
    from jsonschema import validators

    check_properties = validator_class.VALIDATORS["properties"]

    def fill(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": fill})


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def complete(config: dict) -> dict:
    """``config`` (changed in place and returned) with every default of the schema filled, validated.

    >>> complete({"datasets": {"d": {"kind": "synthetic"}}, "align": {"top_k": 3}})["align"]
    {'top_k': 3, 'threshold': 0.8}
    """
    from jsonschema import Draft202012Validator

    _with_defaults(Draft202012Validator)(_schema()).validate(config)
    return config


def schema_defaults() -> dict:
    """The configuration the schema's defaults give, with one synthetic dataset (``demo``)."""
    return complete({"datasets": {"demo": {"kind": "synthetic"}}})


def settings(cls: type[T], section: Mapping, where: str, **values) -> T:
    """An instance of the settings dataclass ``cls``: each field from ``values`` where given, else from ``section``
    (the config section ``where``); lists become tuples. A field in neither is an error that names the setting.

    >>> from emerge_ehr.kg.align import AlignSettings
    >>> settings(AlignSettings, {"top_k": 5, "threshold": 0.8}, "align", top_k=1)
    AlignSettings(top_k=1, threshold=0.8)
    >>> settings(AlignSettings, {"top_k": 5}, "align")
    Traceback (most recent call last):
    ...
    ValueError: the setting align.threshold is missing
    """
    chosen = {}
    for field in fields(cls):
        if field.name in values:
            value = values[field.name]
        elif field.name in section:
            value = section[field.name]
        else:
            raise ValueError(f"the setting {where}.{field.name} is missing")
        chosen[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**chosen)
