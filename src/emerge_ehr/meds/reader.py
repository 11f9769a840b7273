"""A MEDS dataset as the workflow's canonical tables (``kind: meds``; docs/meds.md, "MEDS as input").

MEDS (0.4) holds one long table of events: ``subject_id``, ``time``, ``code``, ``numeric_value`` and
``text_value`` in ``data/**/*.parquet``. The convert stage turns it into the same canonical tables as a MIMIC
download (tables.CANONICAL), so that events, cohort and everything after run unchanged:

- **icustays**: ``ICU_ADMISSION//{unit}`` paired with the subject's next ``ICU_DISCHARGE//{unit}`` at or after it
  (or, where every ICU row has one, by the ``icustay_id`` extension column, which is then the ``stay_id``);
  without that column ``stay_id`` is a surrogate: minus the stay's rank by (subject_id, intime), so never equal
  to a real id.
- **admissions**: ``HOSPITAL_ADMISSION//...`` paired with the next ``HOSPITAL_DISCHARGE//{location}`` (or by the
  ``hadm_id`` extension column); without it a surrogate ``hadm_id`` (minus the rank by subject, admission time).
  ``deathtime`` is the first ``MEDS_DEATH`` inside [admittime, dischtime]; ``hospital_expire_flag`` is 1 when the
  discharge code is ``HOSPITAL_DISCHARGE//DIED`` (or a death falls inside); ``race`` and ``insurance`` from the
  ``RACE//`` and ``INSURANCE//`` codes at the admission time (MEDS-Extract writes them; null without).
- **patients**: ``gender`` from ``GENDER//{F|M}``; ``dod`` the date of the first ``MEDS_DEATH``; age from
  ``MEDS_BIRTH``: a birth at midnight of 1 January is a year of birth (MEDS-Extract writes MIMIC-IV's
  anchor_year - anchor_age that way) and becomes ``anchor_year`` = that year with ``anchor_age`` = 0, so the
  cohort's age is admission year - year of birth, MIMIC-IV's own rule; any other birth time is ``dob``.
- **chartevents / labevents**: the codes that a variable map's patterns match (config/meds/mimic4_variables.yaml):
  group ``itemid_group`` of the pattern is the ``itemid``, the rest of the code after ``//`` the unit (``UNK``:
  none). An itemid listed under the variable's ``chartevents`` goes to chartevents, under ``labevents`` to
  labevents. ``valuenum`` is ``numeric_value`` (MEDS's float32 read back through its shortest decimal text, so
  36.7 stays 36.7 and not 36.70000076), ``value`` is ``text_value``, else the number as text.
- **notes**: rows whose code matches one of ``note_codes`` (regexes; default ``^NOTE//``), text =
  ``text_value``, category = the code after the match (the whole code when nothing follows).

Extension columns used when present: ``hadm_id`` and ``icustay_id`` (MEDS-Extract's MIMIC-IV output has both).
A missing file, column or code raises tables.InputError naming it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl
import yaml

from emerge_ehr.data.tables import CANONICAL, TIME, InputError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
DEFAULT_VARIABLE_MAP = REPO / "config" / "meds" / "mimic4_variables.yaml"
DEFAULT_NOTE_CODES = ("^NOTE//",)
MEDS_TABLES = ("patients", "admissions", "icustays", "chartevents", "labevents", "notes")

HOSPITAL_ADMISSION, HOSPITAL_DISCHARGE = "HOSPITAL_ADMISSION//", "HOSPITAL_DISCHARGE//"
ICU_ADMISSION, ICU_DISCHARGE = "ICU_ADMISSION//", "ICU_DISCHARGE//"
DIED = "HOSPITAL_DISCHARGE//DIED"
GENDER = "GENDER//"
RACE, INSURANCE = "RACE//", "INSURANCE//"
BIRTH, DEATH = "MEDS_BIRTH", "MEDS_DEATH"
NO_UNIT = "UNK"
HADM_COLUMN, STAY_COLUMN = "hadm_id", "icustay_id"
REQUIRED_COLUMNS = ("subject_id", "time", "code")
OPTIONAL_COLUMNS = {"numeric_value": pl.Float32, "text_value": pl.String, HADM_COLUMN: pl.Int64,
                    STAY_COLUMN: pl.Int64}


# --- reading -------------------------------------------------------------------------------------------------------


def data_files(root: str | Path) -> list[Path]:
    """The data shards of a MEDS dataset (``data/**/*.parquet``), sorted; InputError when there are none."""
    data = Path(root) / "data"
    files = sorted(data.rglob("*.parquet")) if data.is_dir() else []
    if not files:
        raise InputError(f"MEDS dataset {root}: no data files (expected {data}/<split>/<shard>.parquet)")
    return files


def scan_events(root: str | Path) -> pl.LazyFrame:
    """Every event of the dataset with the columns this module reads (absent optional ones as null).

    ``numeric_value`` comes back as Float64 via its shortest decimal text: MEDS stores float32.
    """
    frames = []
    for path in data_files(root):
        names = pl.read_parquet_schema(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{path}: missing MEDS column(s) {', '.join(missing)} (found: {', '.join(names)})")
        frames.append(pl.scan_parquet(path).select(
            pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(TIME), pl.col("code").cast(pl.String),
            *[(pl.col(c) if c in names else pl.lit(None)).cast(t).alias(c) for c, t in OPTIONAL_COLUMNS.items()],
        ))
    frame = pl.concat(frames, how="vertical")
    return frame.with_columns(pl.col("numeric_value").cast(pl.String).cast(pl.Float64).alias("numeric_value"))


def has_column(root: str | Path, column: str) -> bool:
    """Whether every data file has the extension column."""
    return all(column in pl.read_parquet_schema(p) for p in data_files(root))


def _after(prefix: str) -> pl.Expr:
    """The code after a prefix (``ICU_ADMISSION//MICU`` -> ``MICU``)."""
    return pl.col("code").str.strip_prefix(prefix)


# --- stays and admissions ------------------------------------------------------------------------------------------


def _pair(starts: pl.DataFrame, ends: pl.DataFrame, id_column: str, start: str, end: str) -> pl.DataFrame:
    """Each start with its end: by ``id_column`` where both sides have it throughout, else the subject's next end
    at or after the start. The result keeps ``id_column`` (null when paired by time)."""
    by_id = (starts.height and ends.height and starts.get_column(id_column).null_count() == 0
             and ends.get_column(id_column).null_count() == 0)
    if by_id:
        return starts.join(ends.drop("subject_id"), on=id_column, how="left")
    return (
        starts.sort(start).join_asof(ends.drop(id_column).sort(end), left_on=start, right_on=end, by="subject_id",
                                     strategy="forward", check_sortedness=False)
        .with_columns(pl.lit(None, dtype=pl.Int64).alias(id_column))
    )


def _surrogate(frame: pl.DataFrame, id_column: str, time_column: str) -> pl.DataFrame:
    """Null ids replaced by minus the row's rank by (subject_id, time): deterministic, and never a real id."""
    frame = frame.sort("subject_id", time_column, "_code")
    rank = -pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    return frame.with_columns(pl.coalesce(pl.col(id_column), rank).alias(id_column))


def admissions(events: pl.LazyFrame) -> pl.DataFrame:
    """Hospital admissions (canonical columns) from HOSPITAL_ADMISSION / HOSPITAL_DISCHARGE and MEDS_DEATH.

    >>> import datetime as dt
    >>> ev = pl.LazyFrame({"subject_id": [1, 1, 1, 1, 1], "time": [dt.datetime(2150, 1, d) for d in (1, 3, 3, 9, 12)],
    ...     "code": ["HOSPITAL_ADMISSION//EW EMER.//ER", "MEDS_DEATH", "HOSPITAL_DISCHARGE//DIED",
    ...              "HOSPITAL_ADMISSION//ELECTIVE//UNK", "HOSPITAL_DISCHARGE//HOME"], "hadm_id": [None] * 5},
    ...     schema_overrides={"hadm_id": pl.Int64})
    >>> admissions(ev).select("hadm_id", "deathtime", "hospital_expire_flag").rows()
    [(-1, datetime.datetime(2150, 1, 3, 0, 0), 1), (-2, None, 0)]
    """
    code = pl.col("code")
    starts = (events.filter(code.str.starts_with(HOSPITAL_ADMISSION))
              .select("subject_id", HADM_COLUMN, pl.col("time").alias("admittime"), code.alias("_code")).collect())
    ends = (events.filter(code.str.starts_with(HOSPITAL_DISCHARGE))
            .select("subject_id", HADM_COLUMN, pl.col("time").alias("dischtime"), (code == DIED).alias("_died"))
            .collect())
    paired = _surrogate(_pair(starts, ends, HADM_COLUMN, "admittime", "dischtime"), HADM_COLUMN, "admittime")
    deaths = events.filter(code == DEATH).select("subject_id", pl.col("time").alias("_death")).collect()
    in_admission = (
        paired.select(HADM_COLUMN, "subject_id", "admittime", "dischtime").join(deaths, on="subject_id")
        .filter(pl.col("_death").is_between(pl.col("admittime"), pl.col("dischtime")))
        .group_by(HADM_COLUMN).agg(pl.col("_death").min().alias("deathtime"))
    )
    return paired.join(in_admission, on=HADM_COLUMN, how="left").join(
        admission_descriptors(events), on=["subject_id", "admittime"], how="left").select(
        "subject_id", HADM_COLUMN, "admittime", "dischtime", "deathtime",
        pl.when(pl.col("dischtime").is_null()).then(None)
        .otherwise((pl.col("_died").fill_null(False) | pl.col("deathtime").is_not_null()).cast(pl.Int64))
        .alias("hospital_expire_flag"),
        "insurance", "race",
    ).sort("subject_id", "admittime")


def admission_descriptors(events: pl.LazyFrame) -> pl.DataFrame:
    """race and insurance per subject and admission time, from MEDS-Extract's ``RACE//{race}`` and
    ``INSURANCE//{insurance}`` codes (written at the admission time); none where a dataset has no such codes.

    >>> import datetime as dt
    >>> ev = pl.LazyFrame({"subject_id": [1, 1], "time": [dt.datetime(2150, 1, 1)] * 2,
    ...                    "code": ["RACE//WHITE", "INSURANCE//Medicare"]})
    >>> admission_descriptors(ev).select("race", "insurance").rows()
    [('WHITE', 'Medicare')]
    """
    code = pl.col("code")
    rows = events.filter(code.str.starts_with(RACE) | code.str.starts_with(INSURANCE)).select(
        "subject_id", pl.col("time").alias("admittime"), code.str.starts_with(RACE).alias("_race"),
        code.str.replace(r"^(RACE|INSURANCE)//", "").alias("_value")).collect()
    return rows.group_by("subject_id", "admittime", maintain_order=True).agg(
        pl.col("_value").filter(pl.col("_race")).first().alias("race"),
        pl.col("_value").filter(~pl.col("_race")).first().alias("insurance"))


def enclosing_admission(frame: pl.DataFrame | pl.LazyFrame, admitted: pl.DataFrame, time: str) -> pl.LazyFrame:
    """``hadm_id`` filled, where null, with the subject's admission whose [admittime, dischtime] holds ``time``."""
    windows = admitted.lazy().select("subject_id", pl.col("hadm_id").alias("_hadm"), "admittime", "dischtime")
    matched = (
        frame.lazy().with_row_index("_row").join_asof(windows.sort("admittime"), left_on=time, right_on="admittime",
                                                      by="subject_id", strategy="backward",
                                                      check_sortedness=False)
        .with_columns(pl.when(pl.col(time) <= pl.col("dischtime")).then(pl.col("_hadm")).alias("_hadm"))
    )
    return (matched.with_columns(pl.coalesce(pl.col("hadm_id"), pl.col("_hadm")).alias("hadm_id"))
            .sort("_row").drop("_row", "_hadm", "admittime", "dischtime"))


def icustays(events: pl.LazyFrame, admitted: pl.DataFrame | None = None) -> pl.DataFrame:
    """ICU stays (canonical columns): ICU_ADMISSION//{first_careunit} with its ICU_DISCHARGE//{last_careunit}.

    >>> import datetime as dt
    >>> ev = pl.LazyFrame({"subject_id": [7] * 6,
    ...     "time": [dt.datetime(2150, 1, d) for d in (1, 2, 4, 6, 7, 8)],
    ...     "code": ["HOSPITAL_ADMISSION//X", "ICU_ADMISSION//MICU", "ICU_DISCHARGE//SICU", "ICU_ADMISSION//CCU",
    ...              "ICU_DISCHARGE//CCU", "HOSPITAL_DISCHARGE//HOME"], "hadm_id": [None] * 6, "icustay_id": [None] * 6},
    ...     schema_overrides={"hadm_id": pl.Int64, "icustay_id": pl.Int64})
    >>> icustays(ev).select("stay_id", "hadm_id", "first_careunit", "last_careunit", pl.col("outtime").dt.day()).rows()
    [(-1, -1, 'MICU', 'SICU', 4), (-2, -1, 'CCU', 'CCU', 7)]
    """
    code = pl.col("code")
    starts = (events.filter(code.str.starts_with(ICU_ADMISSION))
              .select("subject_id", HADM_COLUMN, STAY_COLUMN, pl.col("time").alias("intime"),
                      _after(ICU_ADMISSION).alias("first_careunit"), code.alias("_code")).collect())
    ends = (events.filter(code.str.starts_with(ICU_DISCHARGE))
            .select("subject_id", STAY_COLUMN, pl.col("time").alias("outtime"),
                    _after(ICU_DISCHARGE).alias("last_careunit")).collect())
    paired = _surrogate(_pair(starts, ends, STAY_COLUMN, "intime", "outtime"), STAY_COLUMN, "intime")
    if paired.get_column(HADM_COLUMN).null_count():
        paired = enclosing_admission(paired, admissions(events) if admitted is None else admitted, "intime").collect()
    return paired.select(
        "subject_id", HADM_COLUMN, pl.col(STAY_COLUMN).alias("stay_id"), "first_careunit", "last_careunit",
        pl.lit(None, dtype=pl.Int64).alias("first_wardid"), pl.lit(None, dtype=pl.Int64).alias("last_wardid"),
        "intime", "outtime",
    ).sort("subject_id", "intime")


def patients(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per subject: gender, age basis (see the module's docstring) and date of death.

    >>> import datetime as dt
    >>> ev = pl.LazyFrame({"subject_id": [1, 1, 2, 2, 2], "time": [None, dt.datetime(2090, 1, 1), None,
    ...     dt.datetime(2080, 5, 17, 8), dt.datetime(2150, 3, 1, 14)],
    ...     "code": ["GENDER//F", "MEDS_BIRTH", "GENDER//M", "MEDS_BIRTH", "MEDS_DEATH"]})
    >>> patients(ev).collect().rows()  # doctest: +NORMALIZE_WHITESPACE
    [(1, 'F', 0, 2090, None, None),
     (2, 'M', None, None, datetime.datetime(2080, 5, 17, 8, 0), datetime.date(2150, 3, 1))]
    """
    code = pl.col("code")
    per_subject = events.group_by("subject_id").agg(
        _after(GENDER).filter(code.str.starts_with(GENDER)).first().alias("gender"),
        pl.col("time").filter(code == BIRTH).min().alias("_birth"),
        pl.col("time").filter(code == DEATH).min().alias("_death"),
    )
    birth = pl.col("_birth")
    year_only = (birth.dt.ordinal_day() == 1) & (birth.dt.time() == pl.time(0))
    return per_subject.select(
        "subject_id", "gender",
        pl.when(year_only).then(pl.lit(0, dtype=pl.Int64)).alias("anchor_age"),
        pl.when(year_only).then(birth.dt.year().cast(pl.Int64)).alias("anchor_year"),
        pl.when(~year_only).then(birth).alias("dob"),
        pl.col("_death").dt.date().alias("dod"),
    ).sort("subject_id")


# --- measurements and notes ----------------------------------------------------------------------------------------


def load_variable_map(path: str | Path) -> dict:
    """A variable map (config/meds/mimic4_variables.yaml's shape), checked: InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"MEDS variable map {path} not found")
    spec = yaml.safe_load(path.read_text()) or {}
    variables = spec.get("variables")
    if not isinstance(variables, dict) or not variables:
        raise InputError(f"{path}: no `variables` mapping")
    for name, entry in variables.items():
        if not isinstance(entry, dict) or not entry.get("regex"):
            raise InputError(f"{path}: variable {name} has no `regex` list")
        for pattern in entry["regex"]:
            try:
                re.compile(pattern)
            except re.error as err:
                raise InputError(f"{path}: variable {name}: bad regex {pattern!r} ({err})") from err
    return spec


def code_table(codes: list[str], spec: dict, source: str = "map") -> pl.DataFrame:
    """Each code a variable's pattern matches: its variable, itemid, unit and table (chartevents or labevents).

    >>> spec = {"itemid_group": 1, "variables": {
    ...     "heart_rate": {"chartevents": [220045], "labevents": [], "regex": ["^LAB//(220045)//"]},
    ...     "glucose": {"chartevents": [], "labevents": [50931], "regex": ["^LAB//(?:RESULT//)?(50931)//"]}}}
    >>> code_table(["LAB//220045//bpm", "LAB//RESULT//50931//mg/dL", "LAB//50931//UNK", "LAB//SPECIMEN//50931",
    ...             "MEDS_BIRTH"], spec).rows()  # doctest: +NORMALIZE_WHITESPACE
    [('LAB//220045//bpm', 'heart_rate', 220045, 'bpm', 'chartevents'),
     ('LAB//RESULT//50931//mg/dL', 'glucose', 50931, 'mg/dL', 'labevents'),
     ('LAB//50931//UNK', 'glucose', 50931, None, 'labevents')]
    """
    group = int(spec.get("itemid_group", 1))
    compiled = [(name, re.compile(p), entry) for name, entry in spec["variables"].items() for p in entry["regex"]]
    rows = []
    for code in codes:
        hits = [(name, m, entry) for name, pattern, entry in compiled if (m := pattern.search(code))]
        if len({name for name, _, _ in hits}) > 1:
            raise InputError(f"{source}: code {code!r} matches variables {', '.join(sorted({h[0] for h in hits}))}")
        if not hits:
            continue
        name, match, entry = hits[0]
        try:
            itemid = int(match.group(group))
        except (IndexError, TypeError, ValueError) as err:
            raise InputError(f"{source}: variable {name}: group {group} of its pattern does not give an integer"
                             f" itemid in code {code!r}") from err
        if itemid in entry.get("chartevents", []):
            table = "chartevents"
        elif itemid in entry.get("labevents", []):
            table = "labevents"
        else:
            raise InputError(f"{source}: code {code!r} gives itemid {itemid}, listed neither under chartevents nor"
                             f" labevents of variable {name}")
        unit = code[match.end(group):].removeprefix("//").strip()
        rows.append((code, name, itemid, None if unit in ("", NO_UNIT) else unit, table))
    return pl.DataFrame(rows, schema={"code": pl.String, "variable": pl.String, "itemid": pl.Int64,
                                      "valueuom": pl.String, "table": pl.String}, orient="row")


def distinct_codes(events: pl.LazyFrame) -> list[str]:
    return sorted(events.select(pl.col("code").unique()).collect().get_column("code").to_list())


def measurements(events: pl.LazyFrame, codes: pl.DataFrame, table: str) -> pl.LazyFrame:
    """Chart or lab events (canonical columns before finalising) of the matched codes."""
    value_text = pl.coalesce(pl.col("text_value"), pl.col("numeric_value").cast(pl.String))
    return events.join(codes.filter(pl.col("table") == table).lazy().select("code", "itemid", "valueuom"),
                       on="code", how="inner").select(
        "subject_id", HADM_COLUMN, pl.col(STAY_COLUMN).alias("stay_id"), pl.col("time").alias("charttime"),
        "itemid", value_text.alias("value"), pl.col("numeric_value").alias("valuenum"), "valueuom",
    )


def note_codes_table(codes: list[str], patterns: list[str] | tuple[str, ...]) -> pl.DataFrame:
    """Codes of notes and their category: the code after the first matching pattern's match, else the code.

    >>> note_codes_table(["NOTE//Radiology", "NOTE//", "LAB//1//x", "DISCHARGE_SUMMARY"],
    ...                  ["^NOTE//", "^DISCHARGE_SUMMARY$"]).rows()
    [('NOTE//Radiology', 'Radiology'), ('NOTE//', 'NOTE//'), ('DISCHARGE_SUMMARY', 'DISCHARGE_SUMMARY')]
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise InputError(f"note_codes: bad regex {pattern!r} ({err})") from err
    rows = []
    for code in codes:
        match = next((m for p in compiled if (m := p.search(code))), None)
        if match is not None:
            rows.append((code, code[match.end():].strip() or code))
    return pl.DataFrame(rows, schema={"code": pl.String, "category": pl.String}, orient="row")


def notes(events: pl.LazyFrame, categories: pl.DataFrame) -> pl.LazyFrame:
    """Note rows: note_id ``meds-{n}`` by (subject_id, time, code) order, hadm_id from the column where present
    (the notes stage places the others by time)."""
    return (
        events.join(categories.lazy(), on="code", how="inner")
        .sort("subject_id", "time", "code", "text_value", nulls_last=True)
        .select(
            pl.format("meds-{}", pl.int_range(1, pl.len() + 1)).alias("note_id"), "subject_id", HADM_COLUMN,
            pl.col("time").alias("charttime"), "category", pl.col("text_value").alias("text"),
        )
    )


# --- the convert stage ---------------------------------------------------------------------------------------------


def canonical(frame: pl.DataFrame | pl.LazyFrame, table: str) -> pl.LazyFrame:
    """A frame in the canonical schema of the table (absent columns null)."""
    frame = frame.lazy()
    present = frame.collect_schema().names()
    return frame.select([pl.col(c).cast(t) if c in present else pl.lit(None, dtype=t).alias(c)
                         for c, t in CANONICAL[table].items()])


def table_frame(root: str | Path, table: str, variables: str | Path = DEFAULT_VARIABLE_MAP,
                note_codes: list[str] | tuple[str, ...] = DEFAULT_NOTE_CODES) -> pl.LazyFrame:
    """One canonical table of a MEDS dataset, as a LazyFrame."""
    if table not in MEDS_TABLES:
        raise InputError(f"unknown table '{table}': expected one of {', '.join(MEDS_TABLES)}")
    events = scan_events(root)
    if table == "patients":
        return canonical(patients(events), table)
    if table == "admissions":
        found = admissions(events)
        if found.height == 0:
            raise InputError(f"MEDS dataset {root}: no {HOSPITAL_ADMISSION}* codes (hospital admissions)")
        return canonical(found, table)
    if table == "icustays":
        found = icustays(events)
        if found.height == 0:
            raise InputError(f"MEDS dataset {root}: no {ICU_ADMISSION}* codes (ICU stays)")
        return canonical(found, table)
    codes = distinct_codes(events)
    if table == "notes":
        return canonical(notes(events, note_codes_table(codes, list(note_codes))), table)
    matched = code_table(codes, load_variable_map(variables), str(variables))
    if table == "chartevents" and matched.filter(pl.col("table") == table).height == 0:
        raise InputError(f"MEDS dataset {root}: no code matches a chart variable of {variables}")
    frame = measurements(events, matched, table)
    if table == "chartevents" and not has_column(root, HADM_COLUMN):
        # without a stay id or an admission id the events stage could not place the events: place them by time
        frame = enclosing_admission(frame, admissions(events), "charttime")
    return canonical(frame, table)


def convert(root: str | Path, table: str, out: str | Path, variables: str | Path | None = None,
            note_codes: list[str] | tuple[str, ...] | None = None) -> int:
    """Write one canonical table of a MEDS dataset to ``out`` (nothing is left there on failure); its row count."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = table_frame(root, table, variables or DEFAULT_VARIABLE_MAP,
                        DEFAULT_NOTE_CODES if note_codes is None else note_codes)
    tmp = out.with_name(out.name + ".partial")
    try:
        frame.sink_parquet(tmp)
    except (pl.exceptions.PolarsError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"MEDS dataset {root}: could not convert table '{table}': {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    log.info("converted MEDS %s (%d data file(s)) to %s: %d rows", table, len(data_files(root)), out, rows)
    return rows


# --- given labels (ACES's, or any MEDS label files) ----------------------------------------------------------------

LABEL_COLUMNS = ("subject_id", "prediction_time", "boolean_value")


def read_labels(path: str | Path) -> pl.DataFrame:
    """MEDS labels from a parquet file or a folder of them (ACES writes ``<task>/<split>/<n>.parquet``): subject_id,
    prediction_time, boolean_value; other columns (ACES's all-null integer/float/categorical values) are ignored."""
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path] if path.exists() else []
    if not files:
        raise InputError(f"MEDS labels {path}: no such file, or no .parquet files in it")
    frames = []
    for file in files:
        names = pl.read_parquet_schema(file)
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{file}: missing MEDS label column(s) {', '.join(missing)} (found: {', '.join(names)})")
        frames.append(pl.read_parquet(file, columns=list(LABEL_COLUMNS)).select(
            pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(TIME),
            pl.col("boolean_value").cast(pl.Boolean)))
    labels = pl.concat(frames)
    duplicated = labels.filter(pl.struct("subject_id", "prediction_time").is_duplicated())
    if duplicated.height:
        raise InputError(f"MEDS labels {path}: {duplicated.height} rows share a (subject_id, prediction_time)")
    return labels


def apply_labels(cohort: pl.DataFrame, labels: pl.DataFrame, task: str, when: pl.Expr) -> tuple[pl.DataFrame, dict]:
    """The cohort with ``task``'s labels replaced by the given ones where a label's (subject_id, prediction_time)
    is a stay's (``when``: cohort.prediction_time), and what changed.

    >>> import datetime as dt
    >>> cohort = pl.DataFrame({"stay_id": [1, 2, 3], "subject_id": [1, 2, 3], "intime": [dt.datetime(2150, 1, 1)] * 3,
    ...                        "mortality": [0, 1, 0]}, schema_overrides={"mortality": pl.Int8})
    >>> labels = pl.DataFrame({"subject_id": [1, 2, 9], "prediction_time": [dt.datetime(2150, 1, 3)] * 3,
    ...                        "boolean_value": [True, True, False]})
    >>> out, report = apply_labels(cohort, labels, "mortality", pl.col("intime") + pl.duration(hours=48))
    >>> out.get_column("mortality").to_list(), report  # doctest: +NORMALIZE_WHITESPACE
    ([1, 1, 0], {'rows': 3, 'matched': 2, 'agree': 1, 'changed': 1, 'positive_to_negative': 0,
                 'negative_to_positive': 1, 'not_at_risk_labelled': 0, 'stays_without_label': 1,
                 'labels_outside_cohort': 1})
    """
    keyed = cohort.with_columns(when.alias("_prediction_time"))
    given = labels.rename({"prediction_time": "_prediction_time", "boolean_value": "_given"})
    joined = keyed.join(given, on=["subject_id", "_prediction_time"], how="left")
    ours, theirs = pl.col(task), pl.col("_given").cast(pl.Int8)
    matched = joined.filter(pl.col("_given").is_not_null())
    report = {
        "rows": labels.height,
        "matched": matched.height,
        "agree": matched.filter(ours == theirs).height,
        "changed": matched.filter(ours.is_null() | (ours != theirs)).height,
        "positive_to_negative": matched.filter((ours == 1) & (theirs == 0)).height,
        "negative_to_positive": matched.filter((ours == 0) & (theirs == 1)).height,
        "not_at_risk_labelled": matched.filter(ours.is_null()).height,
        "stays_without_label": joined.height - matched.height,
        "labels_outside_cohort": labels.height - matched.height,
    }
    out = joined.with_columns(pl.coalesce(theirs, ours).cast(cohort.schema[task]).alias(task))
    return out.select(cohort.columns), report
