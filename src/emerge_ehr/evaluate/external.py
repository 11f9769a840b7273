"""External validation: a model developed on dataset A, evaluated unchanged on dataset B.

Everything fitted comes from A: feature normalisation and imputation (A's ``feature_stats.json``), the z-scores
that make abnormal values entities (A's training distribution), the categories of the one-hot variables (the
variable definitions A was built with), and the trained weights. B contributes its stays, values, notes and
labels only. A variable that B never records is missing in every hour, so it takes A's fill value, as a missing
value does in A; the table names these variables. With folds, A's model is its first fold's (trained on
(K - 1) / K of A), with that fold's statistics.
"""

from __future__ import annotations

import polars as pl

from emerge_ehr.data.variables import Variable
from emerge_ehr.evaluate.report import single_class


def lacking_variables(hourly: pl.DataFrame, variables: list[Variable]) -> list[str]:
    """The variables with no value in any hour of any stay.

    >>> from types import SimpleNamespace as V
    >>> lacking_variables(pl.DataFrame({"stay_id": [1], "hour": [0], "ph": [None], "glucose": [90.0]},
    ...     schema_overrides={"ph": pl.Float64}), [V(name="ph"), V(name="glucose"), V(name="weight")])
    ['ph', 'weight']
    """
    return [v.name for v in variables if v.name not in hourly.columns or hourly.get_column(v.name).null_count()
            == hourly.height]


def unseen_categories(hourly: pl.DataFrame, variables: list[Variable]) -> dict[str, list[str]]:
    """Per categorical variable, the values of the test data that are not among its categories (they one-hot
    to nothing, as in the development data)."""
    unseen = {}
    for v in variables:
        if v.is_categorical and v.name in hourly.columns:
            values = set(hourly.get_column(v.name).drop_nulls().cast(pl.String).unique()) - set(v.categories)
            if values:
                unseen[v.name] = sorted(values)
    return unseen


def _cell(result: dict | None, metric: str) -> str:
    if result is None:
        return "not run"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    if "not_applicable" in result:
        return f"n/a: {result['not_applicable']}"
    if reason := single_class(result.get("test_stays"), result.get("positives")):
        return reason
    m = result["metrics"][metric]
    return f"{m['value'] * 100:.1f} [{m['ci_low'] * 100:.1f}, {m['ci_high'] * 100:.1f}]"


def external_markdown(source: str, target: str, rows: list[dict], lacking: list[str],
                      unseen: dict[str, list[str]], level: float) -> str:
    """The external table: each model's metrics on B as developed on A, beside B's and A's internal results.

    ``rows``: task, model, and the metric results (the evaluate stage's JSON) ``external``, ``internal`` (B)
    and ``development`` (A; None where a run lacks one).
    """
    lines = [f"# External validation: developed on {source}, tested on {target}", "",
             f"Every labelled stay of {target} is a test stay of the model developed on {source}, which sees it "
             f"unchanged: normalisation, abnormal-value thresholds and weights from {source}. Beside it, {target}'s "
             f"own internal result and {source}'s. AUROC and AUPRC x100 with {level:.0%} bootstrap intervals.", "",
             f"Variables {target} never records (missing in every hour, filled as in {source}): "
             + (", ".join(lacking) if lacking else "none") + ".",
             "Categorical values outside the development categories: "
             + ("; ".join(f"{name}: {', '.join(values[:5])}" + (" ..." if len(values) > 5 else "")
                          for name, values in unseen.items()) if unseen else "none") + ".", "",
             f"| task | model | external AUROC | external AUPRC | {target} internal AUROC | {target} internal AUPRC "
             f"| {source} internal AUROC | {source} internal AUPRC | stays (positives) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        external = row["external"]
        counts = (f"{external['test_stays']} ({external['positives']})" if external and "test_stays" in external
                  else "")
        lines.append(f"| {row['task']} | {row['model']} | " + " | ".join(
            _cell(row[key], metric) for key in ("external", "internal", "development")
            for metric in ("auroc", "auprc")) + f" | {counts} |")
    return "\n".join(lines) + "\n"
