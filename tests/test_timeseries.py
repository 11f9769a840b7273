"""Event extraction, hourly binning and the model inputs on hand-made events."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from emerge_ehr.data.timeseries import build_features, extract_events, hourly_table, observed_statistics
from emerge_ehr.data.variables import feature_names, load_variables

from conftest import VARIABLES_YAML

T0 = dt.datetime(2150, 1, 1, 8, 0)


@pytest.fixture(scope="module")
def variables():
    return load_variables(VARIABLES_YAML)


def chart(rows):
    """rows: (stay_id, hours after intime, itemid, value text, valuenum, unit)."""
    return pl.DataFrame(
        {
            "subject_id": [1] * len(rows),
            "hadm_id": [10] * len(rows),
            "stay_id": [r[0] for r in rows],
            "charttime": [T0 + dt.timedelta(hours=r[1]) for r in rows],
            "itemid": [r[2] for r in rows],
            "value": [r[3] for r in rows],
            "valuenum": [r[4] for r in rows],
            "valueuom": [r[5] for r in rows],
        },
        schema={"subject_id": pl.Int64, "hadm_id": pl.Int64, "stay_id": pl.Int64, "charttime": pl.Datetime("us"),
                "itemid": pl.Int64, "value": pl.String, "valuenum": pl.Float64, "valueuom": pl.String},
    ).lazy()


STAYS = pl.LazyFrame({"stay_id": [1, 2], "subject_id": [1, 1], "hadm_id": [10, 11], "intime": [T0, T0]})


def events_of(rows, variables, labs=None):
    return extract_events(chart(rows), labs, STAYS, variables, 48).collect()


def test_the_variables_make_61_inputs(variables):
    assert len(variables) == 17
    assert len(feature_names(variables)) == 61


def test_unit_conversions(variables):
    events = events_of(
        [
            (1, 0.5, 223761, "98.6", 98.6, "°F"),  # Fahrenheit item -> 37 C
            (1, 0.5, 223762, "37.5", 37.5, "°C"),
            (1, 1.0, 226531, "176", 176.0, "lbs"),  # lb -> 79.8 kg
            (1, 1.0, 226707, "70", 70.0, "Inch"),  # inches -> 177.8 cm
            (1, 2.0, 223835, "40", 40.0, None),  # FiO2 in percent -> 0.40
            (1, 4.0, 223835, "0.5", 0.5, None),  # FiO2 already a fraction
            (1, 3.0, 220277, "0.95", 0.95, "%"),  # SpO2 as a fraction -> 95
        ],
        variables,
    )
    values = {(r["variable"], r["itemid"], r["hour"]): r["value"] for r in events.iter_rows(named=True)}
    assert values[("temperature", 223761, 0)] == pytest.approx(37.0)
    assert values[("temperature", 223762, 0)] == pytest.approx(37.5)
    assert values[("weight", 226531, 1)] == pytest.approx(176 * 0.45359237)
    assert values[("height", 226707, 1)] == pytest.approx(177.8)
    assert values[("fio2", 223835, 2)] == pytest.approx(0.40)
    assert values[("fio2", 223835, 4)] == pytest.approx(0.5)
    assert values[("spo2", 220277, 3)] == pytest.approx(95.0)


def test_outliers_are_dropped_and_near_outliers_clipped(variables):
    events = events_of(
        [
            (1, 0.0, 220045, "900", 900.0, "bpm"),  # beyond the outlier bound 390 -> dropped
            (1, 1.0, 220045, "360", 360.0, "bpm"),  # between valid 350 and outlier 390 -> clipped to 350
            (1, 2.0, 220045, "", None, "bpm"),  # no value -> dropped
        ],
        variables,
    )
    assert events.select("hour", "value").rows() == [(1, 350.0)]


def test_window_and_hour_bins(variables):
    events = events_of(
        [
            (1, -0.5, 220045, "80", 80.0, "bpm"),  # before ICU admission
            (1, 0.0, 220045, "81", 81.0, "bpm"),
            (1, 47.99, 220045, "82", 82.0, "bpm"),
            (1, 48.0, 220045, "83", 83.0, "bpm"),  # hour 48 is outside a 48-h window
            (None, 5.0, 220045, "84", 84.0, "bpm"),  # no stay id: placed by admission 10 -> stay 1
        ],
        variables,
    )
    assert sorted(events.select("stay_id", "hour", "value").rows()) == [(1, 0, 81.0), (1, 5, 84.0), (1, 47, 82.0)]


def test_categories_from_text_alias_and_score(variables):
    events = events_of(
        [
            (1, 0.0, 220739, "Spontaneously", 4.0, None),
            (1, 1.0, 220739, "", 3.0, None),  # numeric-only charting (the MIMIC-IV demo) -> by score
            (1, 2.0, 223951, "Abnormal >3 secs", None, None),  # capillary refill text alias
            (1, 3.0, 220739, "Sleeping", None, None),  # unknown text -> dropped
        ],
        variables,
    )
    assert sorted(events.select("hour", "variable", "category", "value").rows()) == [
        (0, "gcs_eye", "Spontaneously", 4.0),
        (1, "gcs_eye", "3 To speech", 3.0),
        (2, "capillary_refill_rate", "1.0", 1.0),
    ]


def test_labs_are_matched_by_patient_and_time(variables):
    labs = pl.LazyFrame(
        {"subject_id": [1, 1], "hadm_id": [None, 10], "charttime": [T0 + dt.timedelta(hours=3), T0 - dt.timedelta(hours=1)],
         "itemid": [50820, 50931], "value": ["7.21", "140"], "valuenum": [7.21, 140.0], "valueuom": ["units", "mg/dL"]},
        schema_overrides={"hadm_id": pl.Int64},
    )
    events = events_of([], variables, labs)
    assert events.filter(pl.col("stay_id") == 1).select("variable", "hour", "value", "source").rows() == [
        ("ph", 3, 7.21, "labevents")
    ]


def test_hourly_table_keeps_the_last_value_and_derives_gcs_total(variables):
    events = events_of(
        [
            (1, 0.1, 220045, "80", 80.0, "bpm"),
            (1, 0.9, 220045, "90", 90.0, "bpm"),
            (1, 2.0, 220739, "Spontaneously", 4.0, None),
            (1, 2.0, 223901, "Obeys Commands", 6.0, None),
            (1, 2.0, 223900, "Confused", 4.0, None),
        ],
        variables,
    )
    hourly = hourly_table(events.lazy(), variables).collect()
    assert hourly.filter(pl.col("hour") == 0).get_column("heart_rate").item() == 90.0
    assert hourly.filter(pl.col("hour") == 2).get_column("gcs_total").item() == "14"


def test_features_fill_forward_then_with_training_statistics(variables):
    hourly = pl.DataFrame(
        {"stay_id": [1, 1, 2], "hour": [0, 2, 5], "heart_rate": [100.0, 120.0, 60.0]},
        schema_overrides={"hour": pl.Int16},
    )
    for v in variables:
        if v.name not in hourly.columns:
            hourly = hourly.with_columns(pl.lit(None, dtype=pl.String if v.is_categorical else pl.Float64).alias(v.name))
    cohort = pl.DataFrame({"stay_id": [1, 2, 3], "age": [60.0, 80.0, 70.0], "sex": ["M", "F", "M"],
                           "split": ["train", "train", "test"]})
    stats = observed_statistics(hourly, cohort, variables)
    hr = stats["numeric"]["heart_rate"]
    assert hr["mean"] == pytest.approx(np.mean([100, 120, 60]))
    assert hr["fill"] == 100.0  # training median of the observed values
    features = build_features(hourly, cohort, variables, 4, stats)
    names = feature_names(variables)
    assert features.shape == (3, 4, 61)
    col = names.index("heart_rate")
    z = lambda value: (value - hr["mean"]) / hr["std"]  # noqa: E731
    # stay 1: 100 at hour 0, carried to hour 1, 120 from hour 2; stay 2: nothing before hour 5 -> median.
    np.testing.assert_allclose(features[0, :, col], [z(100), z(100), z(120), z(120)], rtol=1e-5)
    np.testing.assert_allclose(features[1, :, col], [z(100)] * 4, rtol=1e-5)
    normal_eye = names.index("gcs_eye=4 Spontaneously")
    assert features[:, :, normal_eye].min() == 1.0  # never charted -> the normal category
    assert features[:, 0, names.index("sex_male")].tolist() == [1.0, 0.0, 1.0]
    # Each categorical variable has exactly one active category per hour.
    eye = [i for i, n in enumerate(names) if n.startswith("gcs_eye=")]
    assert (features[:, :, eye].sum(axis=-1) == 1).all()


def test_events_come_out_in_one_order_whatever_the_order_of_the_source_rows(variables):
    """Two runs write the same bytes: the extracted events do not depend on the order of the charted rows (nor on
    how the parallel joins happened to interleave them)."""
    rows = [(stay, hour / 2, item, str(value), float(value), unit)
            for stay in (1, 2) for hour in range(30)
            for item, value, unit in ((220045, 70 + hour, "bpm"), (220210, 12 + hour % 7, "insp/min"))]
    forward = events_of(rows, variables)
    shuffled = events_of([rows[i] for i in np.random.default_rng(0).permutation(len(rows))], variables)
    assert forward.height == len(rows) and forward.equals(shuffled)


def test_training_distribution_has_the_same_bits_whatever_the_order_of_the_events():
    from emerge_ehr.data.abnormal import training_distribution

    values = np.random.default_rng(1).normal(80.0, 15.0, 5000)
    events = pl.DataFrame({"stay_id": np.arange(values.size) % 50, "variable": "heart_rate", "value": values})
    cohort = pl.LazyFrame({"stay_id": list(range(50)), "split": ["train"] * 50})
    first = training_distribution(events.lazy(), cohort).collect()
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(values.size)
        again = training_distribution(events[order].lazy(), cohort).collect()
        assert again.rows() == first.rows()  # exact floats, not approximately
