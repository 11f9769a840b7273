"""The cohort's subjects as a MEDS dataset: data shards per split, codes, subject splits and dataset metadata.

Codes follow MEDS-Extract's MIMIC-IV spec (``GENDER//F``, ``MEDS_BIRTH``, ``HOSPITAL_ADMISSION//...``,
``ICU_ADMISSION//{unit}``, ``LAB//{itemid}//{unit}``, ``LAB//RESULT//{itemid}//{unit}``, ``MEDS_DEATH``), so
ACES task configs written for a MEDS-Extract dataset run on this export too. Every ICU stay and admission of the
cohort's subjects is exported (a readmission to a stay outside the cohort stays visible); measurements are the
cohort stays' rows of ``events.parquet`` and notes those of ``notes.parquet``. Each function builds rows of
``ROW_SCHEMA`` from LazyFrames of the canonical tables; ``export`` writes and validates the files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq

from emerge_ehr.data.cohort import mortality_label
from emerge_ehr.data.streaming import write_parquet_in_parts
from emerge_ehr.data.tables import InputError
from emerge_ehr.data.variables import Variable, load_variables

log = logging.getLogger("emerge_ehr")

SPLITS = {"train": meds.train_split, "val": meds.tuning_split, "test": meds.held_out_split}
UNKNOWN = "UNK"
# MEDS-Extract keeps these source ids as extension columns; so do we.
EXTENSION_COLUMNS = ("hadm_id", "icustay_id")
ROW_SCHEMA = {"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "numeric_value": pl.Float32,
              "text_value": pl.String, "hadm_id": pl.Int64, "icustay_id": pl.Int64}
# Descriptions of the codes other than measurements: by prefix (ending in //, {} is the rest) or whole code.
DESCRIPTIONS = {
    "GENDER//": "Sex {} (static: no time)",
    "HOSPITAL_ADMISSION//": "Hospital admission; admission type//location {} (UNK: not in the converted tables)",
    "HOSPITAL_DISCHARGE//": "Hospital discharge; discharge location {} (DIED: died in hospital; UNK: not in the"
                            " converted tables)",
    "ICU_ADMISSION//": "ICU admission to care unit {}",
    "ICU_DISCHARGE//": "ICU discharge from care unit {}",
    "NOTE//": "Clinical note of category {}, its text in text_value",
    meds.birth_code: "Birth (MIMIC-IV: 1 January of anchor_year - anchor_age; MIMIC-III: date of birth, 300 years"
                     " earlier for patients over 89)",
    meds.death_code: "Death: the admission's death time, else the date of death at midnight",
}


def _rows(frame: pl.LazyFrame, time: pl.Expr, code: pl.Expr, **columns: pl.Expr) -> pl.LazyFrame:
    """Rows of ``ROW_SCHEMA``; columns not given are null."""
    given = {"time": time, "code": code} | columns
    return frame.select(
        pl.col("subject_id"), *(given.get(name, pl.lit(None)).alias(name) for name in list(ROW_SCHEMA)[1:])
    ).cast(ROW_SCHEMA)


def _or_unknown(column: str) -> pl.Expr:
    return pl.col(column).fill_null(UNKNOWN)


def subject_splits(cohort: pl.LazyFrame) -> pl.LazyFrame:
    """Each cohort subject's split under its MEDS name (train, tuning, held_out).

    >>> cohort = pl.LazyFrame({"subject_id": [2, 1, 1, 3], "split": ["test", "train", "train", "val"]})
    >>> subject_splits(cohort).collect().rows()
    [(1, 'train'), (2, 'held_out'), (3, 'tuning')]
    """
    return cohort.select("subject_id", pl.col("split").replace_strict(SPLITS)).unique().sort("subject_id")


def demographic_rows(patients: pl.LazyFrame) -> pl.LazyFrame:
    """``GENDER//{gender}`` without a time and ``MEDS_BIRTH``: MIMIC-III's date of birth, or as MEDS-Extract does
    for MIMIC-IV, 1 January of anchor_year - anchor_age.

    >>> import datetime as dt
    >>> patients = pl.LazyFrame({"subject_id": [1, 2], "gender": ["F", "M"], "anchor_age": [60, None],
    ...     "anchor_year": [2150, None], "dob": [None, dt.datetime(2100, 5, 6)]})
    >>> rows = demographic_rows(patients).select("subject_id", "time", "code")
    >>> rows.collect().rows()  # doctest: +NORMALIZE_WHITESPACE
    [(1, None, 'GENDER//F'), (2, None, 'GENDER//M'),
     (1, datetime.datetime(2090, 1, 1, 0, 0), 'MEDS_BIRTH'), (2, datetime.datetime(2100, 5, 6, 0, 0), 'MEDS_BIRTH')]
    """
    birth = pl.coalesce(pl.col("dob"), pl.datetime(pl.col("anchor_year") - pl.col("anchor_age"), 1, 1))
    return pl.concat([
        _rows(patients.filter(pl.col("gender").is_not_null()), pl.lit(None), "GENDER//" + pl.col("gender")),
        _rows(patients.filter(birth.is_not_null()), birth, pl.lit(meds.birth_code)),
    ])


def death_rows(patients: pl.LazyFrame, admissions: pl.LazyFrame) -> pl.LazyFrame:
    """``MEDS_DEATH`` at the earliest admission death time, else at the date of death (midnight).

    >>> import datetime as dt
    >>> patients = pl.LazyFrame({"subject_id": [1, 2, 3], "dod": [dt.date(2150, 1, 3), dt.date(2151, 2, 1), None]})
    >>> admissions = pl.LazyFrame({"subject_id": [1, 2, 3], "deathtime": [dt.datetime(2150, 1, 3, 14), None, None]})
    >>> death_rows(patients, admissions).select("subject_id", "time", "code").sort("subject_id").collect().rows()
    [(1, datetime.datetime(2150, 1, 3, 14, 0), 'MEDS_DEATH'), (2, datetime.datetime(2151, 2, 1, 0, 0), 'MEDS_DEATH')]
    """
    deaths = admissions.group_by("subject_id").agg(pl.col("deathtime").min())
    time = pl.coalesce(pl.col("deathtime"), pl.col("dod").cast(pl.Datetime("us")))
    return _rows(patients.join(deaths, on="subject_id", how="left").filter(time.is_not_null()), time,
                 pl.lit(meds.death_code))


def admission_rows(admissions: pl.LazyFrame) -> pl.LazyFrame:
    """``HOSPITAL_ADMISSION//UNK//UNK`` at admission and ``HOSPITAL_DISCHARGE//DIED|UNK`` at discharge (the
    converted tables keep neither admission type and location nor discharge location, only whether the patient
    died in hospital: the cohort's mortality label).

    >>> import datetime as dt
    >>> admissions = pl.LazyFrame({"subject_id": [1, 1], "hadm_id": [10, 11],
    ...     "admittime": [dt.datetime(2150, 1, 1), dt.datetime(2150, 3, 1)],
    ...     "dischtime": [dt.datetime(2150, 1, 9), dt.datetime(2150, 3, 5)],
    ...     "deathtime": [None, dt.datetime(2150, 3, 5)], "hospital_expire_flag": [0, 1]})
    >>> admission_rows(admissions).select("code", "hadm_id").collect().rows()  # doctest: +NORMALIZE_WHITESPACE
    [('HOSPITAL_ADMISSION//UNK//UNK', 10), ('HOSPITAL_ADMISSION//UNK//UNK', 11),
     ('HOSPITAL_DISCHARGE//UNK', 10), ('HOSPITAL_DISCHARGE//DIED', 11)]
    """
    location = pl.when(mortality_label() == 1).then(pl.lit("DIED")).otherwise(pl.lit(UNKNOWN))
    return pl.concat([
        _rows(admissions, pl.col("admittime"), pl.lit(f"HOSPITAL_ADMISSION//{UNKNOWN}//{UNKNOWN}"),
              hadm_id=pl.col("hadm_id")),
        _rows(admissions, pl.col("dischtime"), "HOSPITAL_DISCHARGE//" + location, hadm_id=pl.col("hadm_id")),
    ])


def icu_rows(icustays: pl.LazyFrame) -> pl.LazyFrame:
    """``ICU_ADMISSION//{first_careunit}`` at intime and ``ICU_DISCHARGE//{last_careunit}`` at outtime.

    >>> import datetime as dt
    >>> icustays = pl.LazyFrame({"subject_id": [1], "hadm_id": [10], "stay_id": [100],
    ...     "first_careunit": ["MICU"], "last_careunit": [None],
    ...     "intime": [dt.datetime(2150, 1, 1)], "outtime": [dt.datetime(2150, 1, 4)]})
    >>> icu_rows(icustays).select("code", "hadm_id", "icustay_id").collect().rows()
    [('ICU_ADMISSION//MICU', 10, 100), ('ICU_DISCHARGE//UNK', 10, 100)]
    """
    ids = {"hadm_id": pl.col("hadm_id"), "icustay_id": pl.col("stay_id")}
    return pl.concat([
        _rows(icustays, pl.col("intime"), "ICU_ADMISSION//" + _or_unknown("first_careunit"), **ids),
        _rows(icustays, pl.col("outtime"), "ICU_DISCHARGE//" + _or_unknown("last_careunit"), **ids),
    ])


def measurement_code(variables: list[Variable]) -> pl.Expr:
    """``LAB//{itemid}//{unit}`` (chartevents) or ``LAB//RESULT//{itemid}//{unit}`` (labevents), as MEDS-Extract
    names them; the unit is the variable's, which the value is converted to (UNK for categorical variables)."""
    units = {v.name: v.unit or UNKNOWN for v in variables}
    result = pl.when(pl.col("source") == "labevents").then(pl.lit("RESULT//")).otherwise(pl.lit(""))
    return pl.concat_str(pl.lit("LAB//"), result, pl.col("itemid").cast(pl.String), pl.lit("//"),
                         pl.col("variable").replace_strict(units, default=UNKNOWN))


def measurement_rows(events: pl.LazyFrame, cohort: pl.LazyFrame, variables: list[Variable]) -> pl.LazyFrame:
    """The cohort stays' rows of ``events.parquet``: numeric_value is the value in the variable's unit, or for a
    categorical variable the category's score, with the category in text_value.

    >>> import datetime as dt
    >>> variables = [Variable("heart_rate", "Heart Rate", "numeric", (220045,), unit="bpm"),
    ...              Variable("gcs_eye", "GCS eye", "categorical", (220739,))]
    >>> events = pl.LazyFrame({"stay_id": [100, 100, 999], "charttime": [dt.datetime(2150, 1, 1, 1)] * 3,
    ...     "variable": ["heart_rate", "gcs_eye", "heart_rate"], "value": [88.0, 4.0, 70.0],
    ...     "category": [None, "4 Spontaneously", None], "itemid": [220045, 220739, 220045],
    ...     "source": ["chartevents"] * 3})
    >>> cohort = pl.LazyFrame({"stay_id": [100], "subject_id": [1], "hadm_id": [10]})
    >>> rows = measurement_rows(events, cohort, variables).select("code", "numeric_value", "text_value")
    >>> rows.sort("code").collect().rows()
    [('LAB//220045//bpm', 88.0, None), ('LAB//220739//UNK', 4.0, '4 Spontaneously')]
    """
    stays = cohort.select("stay_id", "subject_id", "hadm_id")
    return _rows(events.join(stays, on="stay_id", how="inner"), pl.col("charttime"), measurement_code(variables),
                 numeric_value=pl.col("value"), text_value=pl.col("category"), hadm_id=pl.col("hadm_id"),
                 icustay_id=pl.col("stay_id"))


def note_rows(notes: pl.LazyFrame, cohort: pl.LazyFrame) -> pl.LazyFrame:
    """``NOTE//{category}`` with the text in text_value, for every note of ``notes.parquet`` (hadm_id set; no
    icustay_id: a note belongs to the admission, not only its ICU stay).

    >>> import datetime as dt
    >>> notes = pl.LazyFrame({"stay_id": [100], "charttime": [dt.datetime(2150, 1, 2)], "category": ["Radiology"],
    ...     "text": ["CXR: clear."]})
    >>> cohort = pl.LazyFrame({"stay_id": [100], "subject_id": [1], "hadm_id": [10]})
    >>> note_rows(notes, cohort).select("code", "text_value", "hadm_id", "icustay_id").collect().rows()
    [('NOTE//Radiology', 'CXR: clear.', 10, None)]
    """
    stays = cohort.select("stay_id", "subject_id", "hadm_id")
    return _rows(notes.join(stays, on="stay_id", how="inner"), pl.col("charttime"),
                 "NOTE//" + _or_unknown("category"), text_value=pl.col("text"), hadm_id=pl.col("hadm_id"))


def sort_rows(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Each subject's rows together and in time order, static rows (null time) first, ties by code; rows other
    than static ones without a time are dropped (MEDS events need one).

    >>> import datetime as dt
    >>> rows = pl.LazyFrame({"subject_id": [2, 1, 1, 1], "code": ["B", "MEDS_BIRTH", "GENDER//F", "A"],
    ...     "time": [dt.datetime(2150, 1, 1), dt.datetime(2100, 1, 1), None, None]})
    >>> sort_rows(_rows(rows, pl.col("time"), pl.col("code"))).select("subject_id", "code").collect().rows()
    [(1, 'GENDER//F'), (1, 'MEDS_BIRTH'), (2, 'B')]
    """
    static = pl.col("code").str.starts_with("GENDER//")
    keys = ["subject_id", "time", "code", "numeric_value", "text_value", "hadm_id", "icustay_id"]
    return rows.filter(pl.col("time").is_not_null() | static).sort(keys, nulls_last=False)


def code_metadata(codes: pl.LazyFrame, events: pl.LazyFrame, variables: list[Variable]) -> pl.LazyFrame:
    """code, description for every code of the data: measurements name their variable, its description and the
    unit of numeric_value; the other codes say what they stand for.

    >>> variables = [Variable("heart_rate", "Heart Rate", "numeric", (220045,), unit="bpm")]
    >>> events = pl.LazyFrame({"variable": ["heart_rate"], "itemid": [220045], "source": ["chartevents"]})
    >>> codes = pl.LazyFrame({"code": ["LAB//220045//bpm", "ICU_ADMISSION//MICU", "MEDS_DEATH"]})
    >>> for row in code_metadata(codes, events, variables).collect().rows(): print(row)
    ('ICU_ADMISSION//MICU', 'ICU admission to care unit MICU')
    ('LAB//220045//bpm', 'heart_rate: Heart Rate; chartevents item 220045; numeric_value in bpm')
    ('MEDS_DEATH', "Death: the admission's death time, else the date of death at midnight")
    """
    kinds = {v.name: v.kind for v in variables}
    labels = {v.name: v.label for v in variables}
    categorical = pl.col("variable").replace_strict(kinds, default=None) == "categorical"
    value = (pl.when(categorical).then(pl.lit("text_value is the category, numeric_value its score"))
             .otherwise("numeric_value in " + pl.col("code").str.split("//").list.last()))
    label = pl.col("variable").replace_strict(labels, default=None)
    measured = (
        events.select("variable", "itemid", "source").unique()
        .with_columns(measurement_code(variables).alias("code"))
        .select("code", pl.format("{}: {}; {} item {}; {}", "variable", label, "source", "itemid", value)
                .alias("measured"))
    )
    other = pl.lit(None, pl.String)
    for prefix, text in DESCRIPTIONS.items():
        if prefix.endswith("//"):
            described = pl.format(text, pl.col("code").str.strip_prefix(prefix))
            other = pl.when(pl.col("code").str.starts_with(prefix)).then(described).otherwise(other)
        else:
            other = pl.when(pl.col("code") == prefix).then(pl.lit(text)).otherwise(other)
    return (codes.unique().join(measured.unique("code"), on="code", how="left")
            .select("code", pl.coalesce("measured", other).alias("description")).sort("code"))


def write_validated(frame: pl.DataFrame, schema: type, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``frame`` in a ``meds`` schema class under a temporary name, validate the file read back (``align``
    casts polars' types but skips the null checks where it casts), then rename it. ``metadata``: key-value pairs
    added to the Parquet schema's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    table = schema.align(frame.to_arrow())
    if metadata:
        table = table.replace_schema_metadata((table.schema.metadata or {}) | metadata)
    pq.write_table(table, tmp)
    schema.validate(pq.read_table(tmp))
    tmp.replace(path)


# Subjects whose rows are built, sorted and written at a time: the notes' text made the whole table 12.6 GB at
# full MIMIC-IV size; 5,000 subjects at a time peak at 3.5 GB (docs/PERFORMANCE.md, "Full MIMIC-IV").
SUBJECTS_PER_CHUNK = 5_000


def write_in_chunks(subject_ids: pl.DataFrame, rows_of, path: Path, chunk: int = SUBJECTS_PER_CHUNK) -> dict:
    """One MEDS data shard written ``chunk`` subjects at a time (in subject order, so the file stays sorted),
    read back and validated against ``meds.DataSchema`` a row group at a time before it takes its name; returns
    the codes seen and the row count."""
    seen = {"codes": [], "rows": 0}

    def parts():
        for start in range(0, max(subject_ids.height, 1), chunk):
            part = meds.DataSchema.align(rows_of(subject_ids.slice(start, chunk)).to_arrow())
            seen["codes"].append(pl.from_arrow(part.select(["code"])).unique())
            seen["rows"] += part.num_rows
            yield part

    def validate(tmp: Path) -> None:
        shard = pq.ParquetFile(tmp)
        for group in range(shard.num_row_groups):
            meds.DataSchema.validate(shard.read_row_group(group))

    write_parquet_in_parts(parts(), path, check=validate)
    return {"codes": pl.concat(seen["codes"]), "rows": seen["rows"]}


def etl_version() -> str:
    """This package's version: installed metadata, else pyproject.toml (a conda environment runs it from src/)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emerge-ehr")
    except PackageNotFoundError:
        import tomllib

        return tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["project"]["version"]


def dataset_metadata(name: str) -> dict:
    # no created_at (optional in MEDS): two runs of one configuration write the same bytes; the run manifest
    # (results/{dataset}/manifest.json) says when and with what the run was made
    metadata = {"dataset_name": name, "etl_name": "emerge_ehr", "etl_version": etl_version(),
                "meds_version": meds.__version__, "raw_source_id_columns": list(EXTENSION_COLUMNS)}
    meds.DatasetMetadataSchema.validate(metadata)
    return metadata


def export(patients: str, admissions: str, icustays: str, events: str, cohort: str, notes: str, variables: str,
           name: str, out_dir: str | Path) -> None:
    """Write the MEDS dataset of the cohort's subjects under ``out_dir`` (one shard per split)."""
    out_dir = Path(out_dir)
    definitions = load_variables(variables)
    stays = pl.scan_parquet(cohort)
    splits = subject_splits(stays).collect()
    if splits.get_column("subject_id").is_duplicated().any():
        raise InputError(f"{cohort}: a subject is in more than one split; MEDS splits are per subject")
    cohort_events = pl.scan_parquet(events).join(stays.select("stay_id"), on="stay_id", how="semi")

    def rows_of(subject_ids: pl.DataFrame) -> pl.DataFrame:
        subjects = subject_ids.lazy()

        def of_subjects(path: str) -> pl.LazyFrame:
            return pl.scan_parquet(path).join(subjects, on="subject_id", how="semi")

        chunk_stays = stays.join(subjects, on="subject_id", how="semi")
        chunk_events = cohort_events.join(chunk_stays.select("stay_id"), on="stay_id", how="semi")
        return sort_rows(pl.concat([
            demographic_rows(of_subjects(patients)), death_rows(of_subjects(patients), of_subjects(admissions)),
            admission_rows(of_subjects(admissions)), icu_rows(of_subjects(icustays)),
            measurement_rows(chunk_events, chunk_stays, definitions), note_rows(pl.scan_parquet(notes), chunk_stays),
        ])).collect()

    codes, total = [], 0
    for split in SPLITS.values():
        in_split = splits.filter(pl.col("split") == split).select("subject_id")
        rows = write_in_chunks(in_split, rows_of, out_dir / meds.data_subdirectory / split / "0.parquet")
        codes.append(rows["codes"])
        total += rows["rows"]
        log.info("MEDS %s: %d subjects, %d rows", split, in_split.height, rows["rows"])
    codes = code_metadata(pl.concat(codes).unique().lazy(), cohort_events, definitions).collect()
    write_validated(codes, meds.CodeMetadataSchema, out_dir / meds.code_metadata_filepath)
    write_validated(splits, meds.SubjectSplitSchema, out_dir / meds.subject_splits_filepath)
    tmp = out_dir / (meds.dataset_metadata_filepath + ".partial")
    tmp.write_text(json.dumps(dataset_metadata(name), indent=2) + "\n")
    tmp.replace(out_dir / meds.dataset_metadata_filepath)
    log.info("MEDS dataset %s: %d subjects, %d rows, %d codes", name, splits.height, total, codes.height)
