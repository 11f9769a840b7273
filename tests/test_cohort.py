"""Cohort and label logic on hand-made tables whose right answers are worked out in the comments."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from emerge_ehr.data.cohort import CohortSettings, build_cohort
from emerge_ehr.data.tables import InputError

from conftest import DEFAULTS

T0 = dt.datetime(2150, 1, 1, 8, 0)


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def d(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def tables():
    """Seven patients; each row's comment says what the cohort must do with it.

    subject 1: admission 10 has two ICU stays (100, 101) -> both excluded.
    subject 2: stay 200 (72 h), discharged alive, dies 10 days after ICU discharge -> mortality 0, ICU readmission 1.
    subject 3: stay 300 ends at d(3); next ICU stay 301 starts exactly 30 days later -> readmission 1.
               stay 301 (its own admission, 48 h exactly) has no later stay -> readmission 0; included.
    subject 4: stay 400 ends at d(3); next ICU stay 401 starts 31 days later -> readmission 0.
               stay 401 lasts 47 h -> excluded.
    subject 5: stay 500 lasts 60 h but the patient is 17 -> excluded.
    subject 6: stay 600 moves from MICU to SICU -> excluded (transfer).
    subject 7: stay 700, leaves the ICU at d(4), dies in the ward at d(4.5) -> mortality 1, (ICU definition) readmission 1.
    subject 8: stay 800, dies in the ICU 30 min before the recorded out-time -> mortality 1; not at risk of
               ICU readmission (null) under either definition.
    subject 9: stay 900, date of death only, the day before the recorded out-time -> died in the ICU: null.
    """
    icustays = pl.DataFrame(
        {
            "subject_id": [1, 1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9],
            "hadm_id": [10, 10, 20, 30, 31, 40, 41, 50, 60, 70, 80, 90],
            "stay_id": [100, 101, 200, 300, 301, 400, 401, 500, 600, 700, 800, 900],
            "first_careunit": ["MICU"] * 8 + ["MICU", "MICU", "MICU", "MICU"],
            "last_careunit": ["MICU"] * 8 + ["SICU", "MICU", "MICU", "MICU"],
            "first_wardid": [None] * 12,
            "last_wardid": [None] * 12,
            "intime": [T0, d(4), T0, T0, d(33), T0, d(34), T0, T0, T0, T0, T0],
            "outtime": [d(3), d(6), h(72), d(3), d(33) + dt.timedelta(hours=48), d(3),
                        d(34) + dt.timedelta(hours=47), h(60), d(3), d(4), d(5), d(5)],
        },
        schema_overrides={"first_wardid": pl.Int64, "last_wardid": pl.Int64},
    )
    admissions = pl.DataFrame(
        {
            "subject_id": [1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9],
            "hadm_id": [10, 20, 30, 31, 40, 41, 50, 60, 70, 80, 90],
            "admittime": [T0, T0, T0, d(33), T0, d(34), T0, T0, T0, T0, T0],
            "dischtime": [d(8), d(5), d(4), d(40), d(5), d(40), d(5), d(5), d(4.5), d(5), d(5)],
            "deathtime": [None] * 8 + [d(4.5), d(5) - dt.timedelta(minutes=30), None],
            "hospital_expire_flag": [0] * 8 + [1, 1, 1],
        },
        schema_overrides={"deathtime": pl.Datetime("us")},
    )
    patients = pl.DataFrame(
        {
            "subject_id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "gender": ["F", "M", "F", "M", "F", "M", "F", "M", "F"],
            "anchor_age": [50, 60, 70, 80, 17, 40, 90, 65, 75],
            "anchor_year": [2150] * 9,
            "dob": [None] * 9,
            "dod": [None, (h(72) + dt.timedelta(days=10)).date(), None, None, None, None, d(4.5).date(), d(5).date(),
                    d(4).date()],
        },
        schema_overrides={"dob": pl.Datetime("us"), "dod": pl.Date},
    )
    return icustays, admissions, patients


def run(settings: CohortSettings = CohortSettings.from_config(DEFAULTS)) -> tuple[pl.DataFrame, dict]:
    icustays, admissions, patients = tables()
    with_events = icustays.select("stay_id").lazy()
    return build_cohort(icustays.lazy(), admissions.lazy(), patients.lazy(), with_events, settings)


def test_inclusion_criteria():
    cohort, meta = run()
    assert cohort.get_column("stay_id").to_list() == [200, 300, 301, 400, 700, 800, 900]
    flow = {step["step"]: step["stays"] for step in meta["flow"]}
    assert flow["one ICU stay in the admission"] == 10
    assert flow["no transfer between care units"] == 9
    assert flow["age >= 18"] == 8
    assert flow["ICU stay >= 48 h"] == 7


def test_mortality_and_icu_readmission_labels():
    cohort, meta = run()
    labels = {row["stay_id"]: (row["mortality"], row["readmission"]) for row in cohort.iter_rows(named=True)}
    assert labels == {200: (0, 1), 300: (0, 1), 301: (0, 0), 400: (0, 0), 700: (1, 1), 800: (1, None),
                      900: (1, None)}
    assert meta["readmission_definition"] == "icu"
    assert meta["positives"] == {"mortality": 3, "readmission": 3}


def test_hospital_readmission_definition():
    cohort, meta = run(CohortSettings.from_config(DEFAULTS, readmission_definition="hospital"))
    labels = dict(cohort.select("stay_id", "readmission").iter_rows())
    # 300 discharged d(4), next admission d(33): 29 days -> 1; 400 discharged d(5), next d(34): 29 days -> 1;
    # 200 dies after discharge but is never readmitted -> 0; 700 died in hospital -> not at risk (null).
    assert labels == {200: 0, 300: 1, 301: 0, 400: 1, 700: None, 800: None, 900: None}
    assert meta["readmission_definition"] == "hospital"


def test_readmission_window_is_inclusive_at_30_days():
    cohort, _ = run(CohortSettings.from_config(DEFAULTS, readmission_window_days=29.99))
    assert dict(cohort.select("stay_id", "readmission").iter_rows())[300] == 0


def test_split_is_by_patient_and_seeded():
    icustays, admissions, patients = tables()
    cohort_a, _ = run(CohortSettings.from_config(DEFAULTS, split_seed=1))
    cohort_b, _ = run(CohortSettings.from_config(DEFAULTS, split_seed=1))
    assert cohort_a.get_column("split").to_list() == cohort_b.get_column("split").to_list()
    other = run(CohortSettings.from_config(DEFAULTS, split_seed=0))[0]
    assert other.get_column("split").to_list() != cohort_a.get_column("split").to_list()  # the seed is used
    per_patient = cohort_a.group_by("subject_id").agg(pl.col("split").n_unique())
    assert per_patient.get_column("split").max() == 1


def test_age_from_mimic3_date_of_birth_is_capped():
    icustays, admissions, patients = tables()
    shifted = patients.with_columns(
        anchor_age=pl.lit(None, dtype=pl.Int64),
        anchor_year=pl.lit(None, dtype=pl.Int64),
        dob=pl.lit(dt.datetime(1850, 1, 1)),  # MIMIC-III shifts patients over 89 by 300 years
    )
    cohort, _ = build_cohort(icustays.lazy(), admissions.lazy(), shifted.lazy(), icustays.select("stay_id").lazy(),
                             CohortSettings.from_config(DEFAULTS))
    assert cohort.get_column("age").max() == 91.0


@pytest.mark.parametrize(
    "kwargs, setting",
    [({"readmission_definition": "ever"}, "readmission_definition"), ({"split_fractions": (0.5, 0.1, 0.1)}, "split")],
)
def test_bad_settings_name_the_setting(kwargs, setting):
    with pytest.raises(InputError, match=setting):
        CohortSettings.from_config(DEFAULTS, **kwargs)
