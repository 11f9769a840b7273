"""ICU-stay cohort, outcome labels and the patient-level split.

Inclusion follows the MIMIC-III benchmark and EMERGE: adults, one ICU stay per admission, no
transfer between care units, at least ``min_hours`` in the ICU, some chart data in the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from emerge_ehr.data.tables import InputError
from emerge_ehr.settings import settings as _settings

READMISSION_DEFINITIONS = ("icu", "hospital")
# MIMIC-III shifts the birth date of patients over 89 by 300 years; MIMIC-IV caps anchor_age at 91.
OLDEST_AGE = 91.0
DAYS_PER_YEAR = 365.2425


@dataclass(frozen=True)
class CohortSettings:
    min_age: float
    min_hours: float
    readmission_window_days: float
    readmission_definition: str
    split_fractions: tuple[float, float, float]
    split_seed: int

    def __post_init__(self) -> None:
        if self.readmission_definition not in READMISSION_DEFINITIONS:
            raise InputError(
                f"cohort.readmission_definition must be one of {READMISSION_DEFINITIONS},"
                f" not {self.readmission_definition!r}"
            )
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise InputError(f"cohort.split fractions must be non-negative and sum to 1, got {self.split_fractions}")

    @classmethod
    def from_config(cls, config: dict, **values) -> "CohortSettings":
        """``cohort`` of the validated configuration (every default filled by the schema)."""
        cohort = config["cohort"]
        section = {"min_age": cohort["min_age"], "min_hours": cohort["min_hours"],
                   "readmission_window_days": cohort["readmission"]["window_days"],
                   "readmission_definition": cohort["readmission"]["definition"],
                   "split_fractions": cohort["split"]["fractions"], "split_seed": cohort["split"]["seed"]}
        return _settings(cls, section, "cohort", **values)


def stays_with_age(icustays: pl.LazyFrame, admissions: pl.LazyFrame, patients: pl.LazyFrame) -> pl.LazyFrame:
    """ICU stays joined with their admission and patient, with age at ICU admission and stay length.

    >>> import datetime as dt
    >>> icu = pl.LazyFrame({"subject_id": [1], "hadm_id": [10], "stay_id": [100], "first_careunit": ["MICU"],
    ...     "last_careunit": ["MICU"], "first_wardid": [None], "last_wardid": [None],
    ...     "intime": [dt.datetime(2150, 1, 1)], "outtime": [dt.datetime(2150, 1, 3, 12)]})
    >>> adm = pl.LazyFrame({"subject_id": [1], "hadm_id": [10], "admittime": [dt.datetime(2150, 1, 1)],
    ...     "dischtime": [dt.datetime(2150, 1, 9)], "deathtime": [None], "hospital_expire_flag": [0]})
    >>> pat = pl.LazyFrame({"subject_id": [1], "gender": ["F"], "anchor_age": [60], "anchor_year": [2148],
    ...     "dob": [None], "dod": [None]}, schema_overrides={"dob": pl.Datetime("us"), "dod": pl.Date})
    >>> stays_with_age(icu, adm, pat).select("age", "los_hours").collect().row(0)
    (62.0, 60.0)
    """
    age_from_dob = (pl.col("intime") - pl.col("dob")).dt.total_days() / DAYS_PER_YEAR
    age_from_anchor = pl.col("anchor_age") + (pl.col("admittime").dt.year() - pl.col("anchor_year"))
    return (
        icustays.join(admissions.drop("subject_id"), on="hadm_id", how="inner")
        .join(patients, on="subject_id", how="inner")
        .with_columns(
            age=pl.when(pl.col("dob").is_not_null())
            .then(age_from_dob)
            .otherwise(age_from_anchor)
            .cast(pl.Float64)
            .clip(upper_bound=OLDEST_AGE),
            los_hours=(pl.col("outtime") - pl.col("intime")).dt.total_seconds() / 3600.0,
            sex=pl.col("gender").str.to_uppercase().str.slice(0, 1),
        )
    )


def candidate_stays(stays: pl.LazyFrame, settings: CohortSettings) -> pl.LazyFrame:
    """Stays meeting every inclusion criterion except having chart data (which needs the events)."""
    return (
        stays.filter(pl.col("stay_id").count().over("hadm_id") == 1)
        .filter(~transferred())
        .filter(pl.col("age") >= settings.min_age)
        .filter(pl.col("los_hours") >= settings.min_hours)
    )


def transferred() -> pl.Expr:
    """A stay that moved between care units or (MIMIC-III) wards."""
    unit_change = pl.col("first_careunit").fill_null("") != pl.col("last_careunit").fill_null("")
    ward_change = pl.col("first_wardid").is_not_null() & (pl.col("first_wardid") != pl.col("last_wardid"))
    return unit_change | ward_change.fill_null(False)


def cohort_flow(stays: pl.LazyFrame, with_events: pl.LazyFrame, settings: CohortSettings) -> list[dict]:
    """How many stays each inclusion step keeps (a CONSORT-style flow for the metadata)."""
    steps = [
        ("ICU stays with admission and patient", stays),
        ("one ICU stay in the admission", stays.filter(pl.col("stay_id").count().over("hadm_id") == 1)),
    ]
    steps.append(("no transfer between care units", steps[-1][1].filter(~transferred())))
    steps.append((f"age >= {settings.min_age:g}", steps[-1][1].filter(pl.col("age") >= settings.min_age)))
    steps.append(
        (f"ICU stay >= {settings.min_hours:g} h", steps[-1][1].filter(pl.col("los_hours") >= settings.min_hours))
    )
    steps.append(("chart data in the window", steps[-1][1].join(with_events, on="stay_id", how="semi")))
    return [{"step": name, "stays": frame.select(pl.len()).collect().item()} for name, frame in steps]


def prediction_time(task: str, hours: float, readmission_definition: str) -> pl.Expr:
    """When a task's prediction is made, from a cohort row: nothing charted later may reach its model.

    Mortality: ICU admission + ``hours`` (the end of the series window). Readmission: where its label's window
    starts, so that nothing the window counts is known yet: the ICU out-time under the ``icu`` definition (a
    later ward stay, its notes, a death in hospital all count toward the label), hospital discharge under the
    ``hospital`` definition.

    >>> import datetime as dt
    >>> stay = pl.DataFrame({"intime": [dt.datetime(2150, 1, 1)], "outtime": [dt.datetime(2150, 1, 4)],
    ...                      "dischtime": [dt.datetime(2150, 1, 9)]})
    >>> [stay.select(prediction_time(t, 48, d)).item().day for t, d in
    ...  (("mortality", "icu"), ("readmission", "icu"), ("readmission", "hospital"))]
    [3, 4, 9]
    """
    if task == "mortality":
        return pl.col("intime") + pl.duration(seconds=int(hours * 3600))
    if task != "readmission":
        raise InputError(f"no prediction time for task {task!r}: tasks are mortality and readmission")
    if readmission_definition not in READMISSION_DEFINITIONS:
        raise InputError(f"cohort.readmission.definition must be one of {READMISSION_DEFINITIONS}, "
                         f"not {readmission_definition!r}")
    return pl.col("outtime") if readmission_definition == "icu" else pl.col("dischtime")


def mortality_label() -> pl.Expr:
    """In-hospital death: the admission's expire flag, or a death time recorded in the admission."""
    return (
        (pl.col("hospital_expire_flag").fill_null(0) == 1) | pl.col("deathtime").is_not_null()
    ).cast(pl.Int8).alias("mortality")


def death_time() -> pl.Expr:
    """Best-known time of death: the in-hospital death time, else the date of death (start of day)."""
    return pl.coalesce(pl.col("deathtime"), pl.col("dod").cast(pl.Datetime("us")))


def died_in_icu() -> pl.Expr:
    """Death recorded at or before the ICU out-time (MIMIC records the out-time when the body leaves).

    A date of death without a time counts only when its day ends before the out-time's day begins.
    """
    by_time = pl.col("deathtime").is_not_null() & (pl.col("deathtime") <= pl.col("outtime"))
    by_date = pl.col("deathtime").is_null() & (pl.col("dod") < pl.col("outtime").dt.date())
    return (by_time | by_date).fill_null(False)


def icu_readmission(stays: pl.LazyFrame, all_icustays: pl.LazyFrame, window_days: float) -> pl.LazyFrame:
    """Benchmark readmission: another ICU stay starts, or the patient dies, within the window after ICU discharge.

    ``all_icustays`` are every ICU stay of the source (not only the cohort), so a readmission to a
    stay that is itself excluded still counts. A patient who dies in the ICU (death recorded at or before
    the out-time) was never discharged from it alive, so is not at risk of readmission: the label is null
    and the stay is left out of this task, as the ``hospital`` definition leaves out deaths in hospital.
    Deaths after the out-time, in the ward or after discharge, count as positives.
    """
    window = pl.duration(seconds=int(window_days * 86400))
    later = all_icustays.select("subject_id", pl.col("stay_id").alias("next_stay"), pl.col("intime").alias("next_in"))
    readmitted = (
        stays.select("stay_id", "subject_id", "outtime")
        .join(later, on="subject_id", how="inner")
        .filter((pl.col("next_stay") != pl.col("stay_id")) & (pl.col("next_in") >= pl.col("outtime")))
        .filter(pl.col("next_in") - pl.col("outtime") <= window)
        .select("stay_id")
        .unique()
        .with_columns(pl.lit(True).alias("_readmitted"))
    )
    died = death_time().is_not_null() & (death_time() <= pl.col("outtime") + window)
    return (
        stays.join(readmitted, on="stay_id", how="left")
        .with_columns(
            pl.when(died_in_icu())
            .then(None)
            .otherwise((pl.col("_readmitted").fill_null(False) | died.fill_null(False)).cast(pl.Int8))
            .cast(pl.Int8)
            .alias("readmission")
        )
        .drop("_readmitted")
    )


def hospital_readmission(stays: pl.LazyFrame, all_admissions: pl.LazyFrame, window_days: float) -> pl.LazyFrame:
    """Plain readmission: a new admission starts within the window after hospital discharge.

    Patients who die in hospital are not at risk of readmission: their label is null.
    """
    window = pl.duration(seconds=int(window_days * 86400))
    later = all_admissions.select("subject_id", pl.col("hadm_id").alias("next_hadm"), pl.col("admittime").alias("next_in"))
    readmitted = (
        stays.select("stay_id", "subject_id", "hadm_id", "dischtime")
        .join(later, on="subject_id", how="inner")
        .filter((pl.col("next_hadm") != pl.col("hadm_id")) & (pl.col("next_in") >= pl.col("dischtime")))
        .filter(pl.col("next_in") - pl.col("dischtime") <= window)
        .select("stay_id")
        .unique()
        .with_columns(pl.lit(True).alias("_readmitted"))
    )
    return (
        stays.join(readmitted, on="stay_id", how="left")
        .with_columns(
            pl.when(pl.col("mortality") == 1)
            .then(None)
            .otherwise(pl.col("_readmitted").fill_null(False).cast(pl.Int8))
            .cast(pl.Int8)
            .alias("readmission")
        )
        .drop("_readmitted")
    )


def assign_split(cohort: pl.DataFrame, fractions: tuple[float, float, float], seed: int) -> pl.DataFrame:
    """Random patient-level train/val/test split: no patient is in two splits; fixed by seed.

    >>> df = pl.DataFrame({"subject_id": [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
    >>> out = assign_split(df, (0.7, 0.1, 0.2), seed=0)
    >>> out.group_by("subject_id").agg(pl.col("split").n_unique()).get_column("split").max()
    1
    >>> sorted(out.unique("subject_id").get_column("split").value_counts().rows())
    [('test', 2), ('train', 7), ('val', 1)]
    """
    subjects = np.sort(cohort.get_column("subject_id").unique().to_numpy())
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_train = int(round(fractions[0] * len(subjects)))
    n_val = int(round(fractions[1] * len(subjects)))
    split = np.full(len(subjects), "test", dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    mapping = pl.DataFrame({"subject_id": subjects, "split": split.astype(str)})
    return cohort.join(mapping, on="subject_id", how="left")


COHORT_COLUMNS = [
    "stay_id", "subject_id", "hadm_id", "intime", "outtime", "admittime", "dischtime",
    "age", "sex", "race", "insurance", "los_hours", "mortality", "readmission", "split",
]


DESCRIPTORS = ("race", "insurance")


def with_descriptors(stays: pl.LazyFrame) -> pl.LazyFrame:
    """The admission's race and insurance, kept for subgroup metrics; null where the source has none
    (a MEDS dataset, an older extract)."""
    present = stays.collect_schema().names()
    return stays.with_columns(pl.lit(None, dtype=pl.String).alias(name) for name in DESCRIPTORS if name not in present)


def build_cohort(
    icustays: pl.LazyFrame,
    admissions: pl.LazyFrame,
    patients: pl.LazyFrame,
    stays_with_events: pl.LazyFrame,
    settings: CohortSettings,
) -> tuple[pl.DataFrame, dict]:
    """The cohort table (one row per included stay, sorted by stay_id) and its metadata."""
    stays = stays_with_age(icustays, admissions, patients)
    included = candidate_stays(stays, settings).join(stays_with_events, on="stay_id", how="semi")
    labelled = included.with_columns(mortality_label())
    if settings.readmission_definition == "icu":
        labelled = icu_readmission(labelled, icustays, settings.readmission_window_days)
    else:
        labelled = hospital_readmission(labelled, admissions, settings.readmission_window_days)
    cohort = with_descriptors(labelled).select(COHORT_COLUMNS[:-1]).sort("stay_id").collect()
    cohort = assign_split(cohort, settings.split_fractions, settings.split_seed)
    meta = {
        "readmission_definition": settings.readmission_definition,
        "readmission_window_days": settings.readmission_window_days,
        "min_age": settings.min_age,
        "min_hours": settings.min_hours,
        "split_fractions": list(settings.split_fractions),
        "split_seed": settings.split_seed,
        "flow": cohort_flow(stays, stays_with_events, settings),
        "stays": cohort.height,
        "patients": cohort.get_column("subject_id").n_unique(),
        "positives": {task: int(cohort.get_column(task).sum() or 0) for task in ("mortality", "readmission")},
        "not_at_risk": {task: cohort.get_column(task).null_count() for task in ("mortality", "readmission")},
        "splits": dict(sorted(cohort.get_column("split").value_counts().rows())),
    }
    return cohort, meta
