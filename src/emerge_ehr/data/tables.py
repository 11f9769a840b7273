"""Source tables of MIMIC-III v1.4 and MIMIC-IV v2.x, converted once into canonical Parquet.

Every later stage reads the canonical tables only, so the differences between the two layouts
(file names, upper-case columns, MIMIC-III's date-of-birth versus MIMIC-IV's anchor age, the
separate MIMIC-IV-Note module) live here and nowhere else.

Canonical columns are lower case; ICU stays are identified by ``stay_id`` in both layouts. Source file
and column names are matched up to case: MIMIC-III exists with upper-case headers (the full v1.4 CSVs)
and lower-case ones (the demo, Postgres and BigQuery exports), MIMIC-IV likewise.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from emerge_ehr.data.streaming import csv_record_blocks, read_ahead, write_parquet_in_parts

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
LAYOUTS = ("mimic3", "mimic4")
REPLACEMENT = "\ufffd"  # stands in for bytes that are not UTF-8 text, and for NUL


class InputError(ValueError):
    """Bad input data or settings; the message names the file, column or setting."""


@dataclass(frozen=True)
class Column:
    """One canonical column: its source name, its type and whether the source must have it."""

    source: str
    dtype: pl.DataType
    required: bool = True


@dataclass(frozen=True)
class TableSpec:
    """Where a canonical table comes from in one layout, and its columns."""

    files: tuple[str, ...]
    columns: dict[str, Column]
    optional_files: bool = False
    constants: dict[str, dict[str, str]] = field(default_factory=dict)


def _cols(spec: dict[str, tuple]) -> dict[str, Column]:
    return {name: Column(*args) for name, args in spec.items()}


INT, FLOAT, STR = pl.Int64, pl.Float64, pl.String
TIME, DATE = pl.Datetime("us"), pl.Date

# Canonical table -> layout -> spec. Column(source name, canonical dtype, required).
TABLES: dict[str, dict[str, TableSpec]] = {
    "patients": {
        "mimic4": TableSpec(
            ("hosp/patients",),
            _cols({
                "subject_id": ("subject_id", INT),
                "gender": ("gender", STR),
                "anchor_age": ("anchor_age", INT),
                "anchor_year": ("anchor_year", INT),
                "dod": ("dod", DATE),
            }),
        ),
        "mimic3": TableSpec(
            ("PATIENTS",),
            _cols({
                "subject_id": ("SUBJECT_ID", INT),
                "gender": ("GENDER", STR),
                "dob": ("DOB", TIME),
                "dod": ("DOD", DATE),
            }),
        ),
    },
    "admissions": {
        layout: TableSpec(
            (name,),
            _cols({
                "subject_id": (up("subject_id"), INT),
                "hadm_id": (up("hadm_id"), INT),
                "admittime": (up("admittime"), TIME),
                "dischtime": (up("dischtime"), TIME),
                "deathtime": (up("deathtime"), TIME),
                "hospital_expire_flag": (up("hospital_expire_flag"), INT),
                # for subgroup metrics only; null where a source lacks them
                "insurance": (up("insurance"), STR, False),
                "race": (race, STR, False),
            }),
        )
        for layout, name, up, race in (
            ("mimic4", "hosp/admissions", str, "race"),  # MIMIC-IV v2; v1 called it ethnicity
            ("mimic3", "ADMISSIONS", str.upper, "ETHNICITY"),
        )
    },
    "icustays": {
        "mimic4": TableSpec(
            ("icu/icustays",),
            _cols({
                "subject_id": ("subject_id", INT),
                "hadm_id": ("hadm_id", INT),
                "stay_id": ("stay_id", INT),
                "first_careunit": ("first_careunit", STR),
                "last_careunit": ("last_careunit", STR),
                "intime": ("intime", TIME),
                "outtime": ("outtime", TIME),
            }),
        ),
        "mimic3": TableSpec(
            ("ICUSTAYS",),
            _cols({
                "subject_id": ("SUBJECT_ID", INT),
                "hadm_id": ("HADM_ID", INT),
                "stay_id": ("ICUSTAY_ID", INT),
                "first_careunit": ("FIRST_CAREUNIT", STR),
                "last_careunit": ("LAST_CAREUNIT", STR),
                "first_wardid": ("FIRST_WARDID", INT),
                "last_wardid": ("LAST_WARDID", INT),
                "intime": ("INTIME", TIME),
                "outtime": ("OUTTIME", TIME),
            }),
        ),
    },
    "chartevents": {
        "mimic4": TableSpec(
            ("icu/chartevents",),
            _cols({
                "subject_id": ("subject_id", INT),
                "hadm_id": ("hadm_id", INT),
                "stay_id": ("stay_id", INT),
                "charttime": ("charttime", TIME),
                "itemid": ("itemid", INT),
                "value": ("value", STR),
                "valuenum": ("valuenum", FLOAT),
                "valueuom": ("valueuom", STR),
            }),
        ),
        "mimic3": TableSpec(
            ("CHARTEVENTS",),
            _cols({
                "subject_id": ("SUBJECT_ID", INT),
                "hadm_id": ("HADM_ID", INT),
                "stay_id": ("ICUSTAY_ID", INT),
                "charttime": ("CHARTTIME", TIME),
                "itemid": ("ITEMID", INT),
                "value": ("VALUE", STR),
                "valuenum": ("VALUENUM", FLOAT),
                "valueuom": ("VALUEUOM", STR),
                "error": ("ERROR", INT, False),
            }),
        ),
    },
    "labevents": {
        layout: TableSpec(
            (name,),
            _cols({
                "subject_id": (up("subject_id"), INT),
                "hadm_id": (up("hadm_id"), INT),
                "charttime": (up("charttime"), TIME),
                "itemid": (up("itemid"), INT),
                "value": (up("value"), STR),
                "valuenum": (up("valuenum"), FLOAT),
                "valueuom": (up("valueuom"), STR),
            }),
            optional_files=True,
        )
        for layout, name, up in (
            ("mimic4", "hosp/labevents", str),
            ("mimic3", "LABEVENTS", str.upper),
        )
    },
    "notes": {
        "mimic4": TableSpec(
            ("note/radiology", "note/discharge"),
            _cols({
                "note_id": ("note_id", STR),
                "subject_id": ("subject_id", INT),
                "hadm_id": ("hadm_id", INT),
                "charttime": ("charttime", TIME),
                "text": ("text", STR),
            }),
            optional_files=True,
            constants={"note/radiology": {"category": "Radiology"}, "note/discharge": {"category": "Discharge summary"}},
        ),
        "mimic3": TableSpec(
            ("NOTEEVENTS",),
            _cols({
                "note_id": ("ROW_ID", STR),
                "subject_id": ("SUBJECT_ID", INT),
                "hadm_id": ("HADM_ID", INT),
                "chartdate": ("CHARTDATE", DATE),
                "charttime": ("CHARTTIME", TIME),
                "category": ("CATEGORY", STR),
                "text": ("TEXT", STR),
                "iserror": ("ISERROR", INT, False),
            }),
            optional_files=True,
        ),
    },
}

# Canonical schema of each converted table, identical for both layouts.
CANONICAL: dict[str, dict[str, pl.DataType]] = {
    "patients": {"subject_id": INT, "gender": STR, "anchor_age": INT, "anchor_year": INT, "dob": TIME, "dod": DATE},
    "admissions": {name: col.dtype for name, col in TABLES["admissions"]["mimic4"].columns.items()},
    "icustays": {name: col.dtype for name, col in TABLES["icustays"]["mimic3"].columns.items()},
    "chartevents": {name: col.dtype for name, col in TABLES["chartevents"]["mimic3"].columns.items()},
    "labevents": {name: col.dtype for name, col in TABLES["labevents"]["mimic4"].columns.items()},
    "notes": {"note_id": STR, "subject_id": INT, "hadm_id": INT, "charttime": TIME, "category": STR, "text": STR},
}


def source_files(root: str | Path, layout: str, table: str, notes_root: str | Path | None = None) -> list[Path]:
    """The existing source files of a canonical table (``.csv.gz``, ``.csv`` or ``.parquet``), names matched up to case.

    Raises InputError naming the expected path when a required table is missing.
    """
    spec = _spec(layout, table)
    found = []
    for stem in spec.files:
        base = Path(root)
        if table == "notes" and layout == "mimic4" and notes_root is not None:
            base, stem = Path(notes_root), stem.removeprefix("note/")
        candidates = [base / f"{stem}{suffix}" for suffix in (".csv.gz", ".csv", ".parquet")]
        hit = next((path for path in map(_existing_up_to_case, candidates) if path is not None), None)
        if hit is None and not spec.optional_files:
            raise InputError(f"{layout} table '{table}' not found: expected {candidates[0]} (or .csv/.parquet)")
        if hit is not None:
            found.append(hit)
    return found


def _existing_up_to_case(path: Path) -> Path | None:
    """The one file in ``path``'s folder whose name equals ``path``'s up to case, if any."""
    if not path.parent.is_dir():
        return None
    matches = sorted(p for p in path.parent.iterdir() if p.name.lower() == path.name.lower())
    if len(matches) > 1:
        raise InputError(f"{path.parent}: files {' and '.join(p.name for p in matches)} differ only in case; keep one")
    return matches[0] if matches else None


def _spec(layout: str, table: str) -> TableSpec:
    if layout not in LAYOUTS:
        raise InputError(f"unknown dataset kind/layout '{layout}': expected one of {', '.join(LAYOUTS)}")
    if table not in TABLES:
        raise InputError(f"unknown table '{table}': expected one of {', '.join(TABLES)}")
    return TABLES[table][layout]


def _scan_raw(path: Path) -> pl.LazyFrame:
    """Scan a source file with every column as text, so that parsing errors can name their column.

    Bytes that are not UTF-8 become U+FFFD instead of failing the whole table; ``convert`` counts them.
    """
    if path.suffix == ".parquet":
        return pl.scan_parquet(path)
    return pl.scan_csv(path, infer_schema=False, quote_char='"', encoding="utf8-lossy")


def _header(path: Path) -> list[str]:
    return _scan_raw(path).collect_schema().names()


def _fold(name: str) -> str:
    """A column name up to case, spaces and a byte-order mark (spreadsheet exports add one)."""
    return name.strip().lstrip("\ufeff").strip().lower()


def resolve_columns(path: Path, header: list[str], layout: str, table: str) -> dict[str, str]:
    """Canonical column -> the file's column of that name up to case, for the columns the file has.

    Raises InputError naming the file and both columns when two columns of the file are equal up to case
    and the table needs that column, and naming the missing ones when a required column is absent.

    >>> resolve_columns(Path("ICUSTAYS.csv"), ["row_id", "subject_id", "hadm_id", "icustay_id", "intime",
    ...     "first_wardid", "last_wardid",
    ...     "outtime", "first_careunit", "last_careunit"], "mimic3", "icustays")["stay_id"]
    'icustay_id'
    """
    spec = _spec(layout, table)
    by_folded: dict[str, list[str]] = {}
    for name in header:
        by_folded.setdefault(_fold(name), []).append(name)
    resolved, missing = {}, []
    for canonical, col in spec.columns.items():
        names = by_folded.get(_fold(col.source), [])
        if len(names) > 1:
            raise InputError(f"{path}: columns {' and '.join(names)} are equal up to case; the {layout} '{table}'"
                             f" table needs exactly one {col.source}")
        if names:
            resolved[canonical] = names[0]
        elif col.required:
            missing.append(col.source)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} required for the {layout} '{table}' table"
            f" (found: {', '.join(header)}; names are matched up to case)"
        )
    return resolved


def _parse(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Parse a text column strictly into its canonical type (empty text is null)."""
    text = column.cast(pl.String).str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    if dtype == TIME:
        # MIMIC writes seconds; some exports drop them or add fractions.
        return text.str.to_datetime(TIME_FORMAT, strict=False, time_unit="us").fill_null(
            text.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us")
        ).fill_null(text.str.to_datetime(DATE_FORMAT, strict=False, time_unit="us"))
    if dtype == DATE:
        return text.str.slice(0, 10).str.to_date(DATE_FORMAT, strict=False)
    if dtype == INT:
        return text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    if dtype == FLOAT:
        return text.cast(pl.Float64, strict=False)
    return text


def canonical_frame(path: Path, layout: str, table: str) -> pl.LazyFrame:
    """One source file as a LazyFrame of canonical columns (missing optional columns are null).

    Raises InputError naming the file and column when a required column is absent.
    """
    return _scan_raw(path).select(_canonical_columns(path, _header(path), layout, table))


def _canonical_columns(path: Path, header: list[str], layout: str, table: str) -> list[pl.Expr]:
    spec = _spec(layout, table)
    present = resolve_columns(path, header, layout, table)
    exprs = []
    for name, col in spec.columns.items():
        if name in present:
            raw = pl.col(present[name])
            exprs.append((_clean_text(raw) if col.dtype == STR else _parse(raw, col.dtype)).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=col.dtype).alias(name))
    base = path.name.lower().removesuffix(".gz").removesuffix(".csv").removesuffix(".parquet")
    stem = next((s for s in spec.files if Path(s).name.lower() == base), None)
    return exprs + [pl.lit(v).alias(k) for k, v in spec.constants.get(stem, {}).items()]


def _raw_parts(path: Path) -> Iterator[pl.DataFrame]:
    """A source file part by part, every column as text (see ``_scan_raw``), never held whole."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        yield pl.from_arrow(source.schema_arrow.empty_table())  # so that a file without rows has its columns
        yield from map(pl.from_arrow, source.iter_batches(batch_size=50_000))
        return
    for block in read_ahead(csv_record_blocks(path)):
        yield pl.read_csv(block, infer_schema=False, quote_char='"', encoding="utf8-lossy")


def canonical_parts(path: Path, layout: str, table: str) -> Iterator[pl.DataFrame]:
    """``finalise(canonical_frame(...))`` part by part: for note files, which polars reads whole before parsing
    when quoted fields span lines (2.6 GB for 3.3 GB of discharge summaries)."""
    columns = _canonical_columns(path, _header(path), layout, table)
    for raw in _raw_parts(path):
        yield finalise(raw.lazy().select(columns), layout, table).collect()


def _clean_text(column: pl.Expr) -> pl.Expr:
    """Text with NUL bytes (which break tokenizers and C strings downstream) replaced like invalid UTF-8."""
    return column.cast(pl.String).str.replace_all("\x00", REPLACEMENT, literal=True)


def finalise(frame: pl.LazyFrame, layout: str, table: str) -> pl.LazyFrame:
    """Bring a layout's canonical frame to the one canonical schema of the table."""
    if table == "notes" and layout == "mimic3":
        # Discharge summaries carry a date only: treat them as written at the end of that day, so they
        # can never leak into a prediction made earlier that day.
        end_of_day = pl.col("chartdate").cast(TIME) + pl.duration(hours=23, minutes=59, seconds=59)
        frame = frame.filter(pl.col("iserror").fill_null(0) != 1).with_columns(
            pl.col("charttime").fill_null(end_of_day), pl.col("category").str.strip_chars()
        )
    if table == "chartevents":
        frame = frame.filter(pl.col("error").fill_null(0) != 1) if layout == "mimic3" else frame
    schema = CANONICAL[table]
    present = frame.collect_schema().names()
    return frame.select(
        [pl.col(c).cast(t) if c in present else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()]
    )


def empty_table(table: str) -> pl.DataFrame:
    """An empty canonical table (for absent optional sources such as the MIMIC-IV-Note module)."""
    return pl.DataFrame(schema=CANONICAL[table])


def check_parses(path: Path, layout: str, table: str, sample_rows: int = 10_000) -> None:
    """Fail early, naming file and column, when a sample of non-empty values does not parse."""
    spec = _spec(layout, table)
    raw = _scan_raw(path).head(sample_rows).collect()
    present = resolve_columns(path, raw.columns, layout, table)
    for name, col in spec.columns.items():
        if name not in present or col.dtype == STR:
            continue
        values = raw.select(pl.col(present[name]).cast(pl.String).str.strip_chars().alias("raw")).with_row_index("row")
        values = values.with_columns(_parse(pl.col("raw"), col.dtype).alias("parsed"))
        bad = values.filter(pl.col("raw").is_not_null() & (pl.col("raw") != "") & pl.col("parsed").is_null())
        if bad.height:
            # The message names the column and the expected type, never the values (they may be clinical).
            expected = {TIME: f"timestamps like {TIME_FORMAT}", DATE: f"dates like {DATE_FORMAT}"}.get(col.dtype, col.dtype)
            raise InputError(
                f"{path}: column {present[name]} has values that are not {expected}:"
                f" {bad.height} of the first {raw.height} rows (first at data row {bad['row'][0] + 1})"
            )


def unreadable_gzip(path: Path) -> str | None:
    """Why a ``.gz`` file cannot be read to its end (truncated, or a corrupt stream), else None."""
    if not path.name.endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except EOFError:
        return "truncated (the gzip stream ends before its end marker)"
    except (OSError, zlib.error) as err:
        return f"corrupt ({err})"
    return None


def replaced_characters(path: Path, table: str) -> dict[str, int]:
    """Per text column of a converted table, the values holding U+FFFD (bytes that were not UTF-8, or NUL)."""
    text_columns = [c for c, t in CANONICAL[table].items() if t == STR]
    if not text_columns:
        return {}
    counts = pl.scan_parquet(path).select(
        pl.col(c).str.contains(REPLACEMENT, literal=True).sum().alias(c) for c in text_columns
    ).collect(engine="streaming").row(0, named=True)
    return {column: count for column, count in counts.items() if count}


def convert(
    root: str | Path, layout: str, table: str, out: str | Path, notes_root: str | Path | None = None
) -> int:
    """Convert one source table (all its files) into canonical Parquet, streaming; returns the row count.

    Nothing is left at ``out`` unless the whole table converted: a truncated or corrupt file fails the job
    with an error naming that file.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = source_files(root, layout, table, notes_root)
    if not paths:
        log.info("no source files for optional table %s; writing an empty table", table)
        empty_table(table).write_parquet(out)
        return 0
    tmp = out.with_name(out.name + ".partial")
    try:
        for path in paths:
            check_parses(path, layout, table)
        if table == "notes":
            # row groups are what a streaming reader holds at once: 1 million notes of text are 1.6 GB
            write_parquet_in_parts((part for path in paths for part in canonical_parts(path, layout, table)), out)
        else:
            frames = [finalise(canonical_frame(path, layout, table), layout, table) for path in paths]
            pl.concat(frames, how="vertical").sink_parquet(tmp, row_group_size=1_000_000)
            tmp.replace(out)
    except (pl.exceptions.PolarsError, OSError, EOFError, zlib.error) as err:
        tmp.unlink(missing_ok=True)
        unreadable = [(path, why) for path in paths if (why := unreadable_gzip(path))]
        if unreadable:
            raise InputError("; ".join(f"{path}: file is {why}" for path, why in unreadable)
                             + f"; nothing of table '{table}' was written") from err
        raise InputError(f"{', '.join(map(str, paths))}: could not convert table '{table}': {err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    log.info("converted %s (%d file(s)) to %s: %d rows", table, len(paths), out, rows)
    for column, count in replaced_characters(out, table).items():
        log.warning("%s: %d value(s) of column %s held bytes that are not UTF-8 text or NUL; replaced by U+FFFD"
                    " and kept", table, count, column)
    return rows
