"""Decision curves: dcurves' net benefit equals the formula by hand; treat-none is zero, treat-all the prevalence
formula; the calibration bins hold every stay."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from emerge_ehr.evaluate.decision import net_benefit, useful_range
from emerge_ehr.evaluate.plots import calibration_bins


def test_net_benefit_is_the_formula_by_hand():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.15).astype(int)
    p = np.clip(0.15 + 0.4 * (y - 0.15) + rng.normal(0, 0.15, 2000), 0, 1)
    table = net_benefit(y, {"m": p}, np.array([0.05, 0.1, 0.3]))
    prevalence = y.mean()
    for t in (0.05, 0.1, 0.3):
        row = {m: v for m, v in table.filter(pl.col("threshold") == t).select("model", "net_benefit").rows()}
        treated = p >= t
        expected = (treated & (y == 1)).mean() - (treated & (y == 0)).mean() * t / (1 - t)
        assert row["m"] == pytest.approx(expected)
        assert row["none"] == 0.0
        assert row["all"] == pytest.approx(prevalence - (1 - prevalence) * t / (1 - t))
    assert useful_range(table, "m") == "0.05-0.30"


def test_calibration_bins_cover_every_stay():
    rng = np.random.default_rng(2)
    y = (rng.random(500) < 0.3).astype(float)
    p = rng.random(500)
    predicted, observed, low, high = calibration_bins(y, p, bins=10)
    assert len(predicted) == 10
    assert np.all((low <= observed) & (observed <= high))
    assert predicted.mean() == pytest.approx(p.mean(), abs=1e-9)  # equal-count bins: the mean of the bin means


def test_a_test_split_with_one_outcome_gives_no_curve_and_says_why(tmp_path, caplog):
    from emerge_ehr.report_stages import decision_curves

    caplog.set_level("INFO")

    run = tmp_path / "gru" / "seed0"
    run.mkdir(parents=True)
    pl.DataFrame({"stay_id": [1, 2, 3], "split": "test", "label": [0, 0, 0], "probability": [0.1, 0.2, 0.3]},
                 schema_overrides={"label": pl.Int8}).write_parquet(run / "predictions.parquet")
    (run / "summary.json").write_text('{"train_stays": 10}')
    decision_curves({"gru": [str(run / "predictions.parquet")]}, "mortality", str(tmp_path / "nb.csv"),
                    str(tmp_path / "nb.png"))
    assert pl.read_csv(tmp_path / "nb.csv").is_empty() and (tmp_path / "nb.png").stat().st_size > 1000
    assert "decision curves mortality: n/a: 3 labelled test stays, none positive" in caplog.text
