"""Decision curves: the net benefit of acting on each model's risk, against treating every stay or none.

Net benefit at threshold probability t is TP/n - FP/n * t / (1 - t) (Vickers & Elkin 2006): the true
positives a rule finds, less its false positives weighed by the odds at which a clinician would act. dcurves
computes it (0.3 s for 73,000 stays and 99 thresholds); a model is useful at t where its curve lies above both
"all" (treat everyone) and "none" (treat no one, net benefit 0).
"""

from __future__ import annotations

import numpy as np
import polars as pl

THRESHOLDS = np.round(np.arange(0.01, 0.61, 0.01), 2)  # ICU decisions rarely wait for a risk above 60 %
NET_BENEFIT_SCHEMA = {"model": pl.String, "threshold": pl.Float64, "net_benefit": pl.Float64, "tp_rate": pl.Float64,
                      "fp_rate": pl.Float64}


def net_benefit(y: np.ndarray, risks: dict[str, np.ndarray], thresholds: np.ndarray = THRESHOLDS) -> pl.DataFrame:
    """Net benefit of each model, of treating all and of treating none, at each threshold.

    >>> table = net_benefit(np.array([1, 0, 0, 0]), {"m": np.array([0.9, 0.6, 0.2, 0.1])}, np.array([0.5]))
    >>> table.select("model", "net_benefit").rows()  # m: TP 1, FP 1 at t = 0.5 -> 1/4 - 1/4 * 1 = 0
    [('m', 0.0), ('all', -0.5), ('none', 0.0)]
    """
    import pandas as pd
    from dcurves import dca

    data = pd.DataFrame({"outcome": np.asarray(y, dtype=int)} | {name: np.asarray(p, dtype=float)
                                                                   for name, p in risks.items()})
    result = dca(data=data, outcome="outcome", modelnames=list(risks), thresholds=thresholds)
    table = pl.from_pandas(result[["model", "threshold", "net_benefit", "tp_rate", "fp_rate"]])
    order = {name: rank for rank, name in enumerate([*risks, "all", "none"])}
    return (table.with_columns(pl.col("model").cast(pl.String), pl.col("threshold").round(4))
            .sort(pl.col("model").replace_strict(order, return_dtype=pl.Int64), "threshold"))


def useful_range(table: pl.DataFrame, model: str) -> str:
    """The thresholds at which a model's net benefit beats both treating all and treating none, as text.

    >>> t = pl.DataFrame({"model": ["m"] * 3 + ["all"] * 3 + ["none"] * 3, "threshold": [0.1, 0.2, 0.3] * 3,
    ...     "net_benefit": [0.05, 0.04, 0.0, 0.06, 0.01, -0.05, 0, 0, 0]})
    >>> useful_range(t, "m")
    '0.20'
    """
    wide = table.pivot(on="model", index="threshold", values="net_benefit").sort("threshold")
    beats = wide.filter((pl.col(model) > pl.col("all")) & (pl.col(model) > pl.col("none")))
    if beats.is_empty():
        return "none"
    lo, hi = beats.get_column("threshold").min(), beats.get_column("threshold").max()
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def plot_decision_curves(table: pl.DataFrame, task: str, where: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emerge_ehr.evaluate.plots import save_figure

    figure, axes = plt.subplots(figsize=(6, 5))
    prevalence = None
    for model in table.get_column("model").unique(maintain_order=True):
        rows = table.filter(pl.col("model") == model)
        style = {"all": {"color": "k", "ls": "--", "lw": 1}, "none": {"color": "k", "ls": ":", "lw": 1}}.get(model, {})
        axes.plot(rows.get_column("threshold"), rows.get_column("net_benefit"), label=model, **style)
        if model == "all":
            prevalence = rows.get_column("net_benefit").max()
    top = max(float(prevalence or 0.0), 0.01)
    axes.set_ylim(-0.2 * top, 1.1 * top)  # treat-all falls steeply; keep the models' range readable
    axes.set_xlabel("Threshold probability")
    axes.set_ylabel("Net benefit")
    axes.set_title(f"{task}: decision curves, {where}")
    axes.legend(fontsize=7, loc="upper right")
    save_figure(figure, out)
