"""The clinical variables of the time series, loaded from ``config/variables.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from emerge_ehr.data.tables import InputError


@dataclass(frozen=True)
class Conversion:
    """A unit conversion, applied when the itemid, the unit text or a value bound says the unit is ``source``."""

    source: str
    scale: float
    offset: float = 0.0
    items: tuple[int, ...] = ()
    units: tuple[str, ...] = ()
    above: float | None = None
    at_most: float | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    kind: str  # "numeric" or "categorical"
    chart_items: tuple[int, ...]
    lab_items: tuple[int, ...] = ()
    unit: str | None = None
    normal: float | str | None = None
    valid: tuple[float, float] | None = None
    outlier: tuple[float, float] | None = None
    conversions: tuple[Conversion, ...] = ()
    categories: tuple[str, ...] = ()
    scores: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    def category_of_score(self) -> dict[int, str]:
        """The category that stands for each score (the first listed), for numeric-only charting."""
        mapping: dict[int, str] = {}
        for category in self.categories:
            mapping.setdefault(self.scores[category], category)
        return mapping

    def feature_names(self) -> list[str]:
        if self.is_categorical:
            return [f"{self.name}={category}" for category in self.categories]
        return [self.name]


def load_variables(path: str | Path) -> list[Variable]:
    """Parse the variable definitions; InputError names the file and the bad entry."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text())["variables"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read variable definitions ({err})") from err
    variables = []
    for index, entry in enumerate(entries):
        try:
            variables.append(_variable(entry))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{path}: variable #{index} ({entry.get('name', '?')}) is malformed: {err!r}") from err
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: variable names must be unique")
    return variables


def _variable(entry: dict) -> Variable:
    kind = entry["kind"]
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"kind must be numeric or categorical, not {kind!r}")
    items = entry.get("items", {})
    common = dict(
        name=entry["name"],
        label=entry.get("label", entry["name"]),
        kind=kind,
        chart_items=tuple(int(i) for i in items.get("chartevents", [])),
        lab_items=tuple(int(i) for i in items.get("labevents", [])),
        normal=entry["normal"],
    )
    if kind == "categorical":
        categories = tuple(str(c) for c in entry["categories"])
        scores = {str(k): int(v) for k, v in entry["scores"].items()}
        if set(scores) != set(categories) or str(entry["normal"]) not in categories:
            raise ValueError("scores must list every category, and normal must be one of them")
        return Variable(
            **common | {"normal": str(entry["normal"])},
            categories=categories,
            scores=scores,
            aliases={str(k): str(v) for k, v in entry.get("aliases", {}).items()},
        )
    conversions = tuple(
        Conversion(
            source=c["from"],
            scale=float(c["scale"]),
            offset=float(c.get("offset", 0.0)),
            items=tuple(int(i) for i in c.get("items", [])),
            units=tuple(str(u) for u in c.get("units", [])),
            above=c.get("above"),
            at_most=c.get("at_most"),
        )
        for c in entry.get("conversions", [])
    )
    return Variable(
        **common | {"normal": float(entry["normal"])},
        unit=entry["unit"],
        valid=tuple(float(x) for x in entry["valid"]),
        outlier=tuple(float(x) for x in entry["outlier"]),
        conversions=conversions,
    )


def item_table(variables: list[Variable]) -> pl.DataFrame:
    """itemid -> (source table, variable), the join key of event extraction."""
    rows = [
        (item, source, v.name)
        for v in variables
        for source, items in (("chartevents", v.chart_items), ("labevents", v.lab_items))
        for item in items
    ]
    table = pl.DataFrame(rows, schema={"itemid": pl.Int64, "source": pl.String, "variable": pl.String}, orient="row")
    duplicated = table.filter(pl.struct("itemid", "source").is_duplicated())
    if duplicated.height:
        raise InputError(f"itemid {duplicated['itemid'][0]} is mapped to more than one variable")
    return table


def feature_names(variables: list[Variable]) -> list[str]:
    """Names of the per-hour model inputs: variables in order (categoricals one-hot), then age and sex."""
    return [name for v in variables for name in v.feature_names()] + ["age", "sex_male"]
