"""The first hours of each ICU stay as events, hourly bins and the model's input array.

Three steps, each a separate contract:
1. ``extract_events``: chart and lab events of the variables inside the window, unit-converted,
   range-checked and mapped to categories (long table, ``events.parquet``);
2. ``hourly_table``: the last value of each variable in each hour (``timeseries.parquet``, raw units);
3. ``build_features``: forward fill, imputation, one-hot and z-scores with training-split statistics
   (``features.npy``, stays x hours x inputs, and ``feature_stats.json``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from emerge_ehr.data.variables import Variable, feature_names, item_table

EVENT_SCHEMA = {
    "stay_id": pl.Int64,
    "hour": pl.Int16,
    "charttime": pl.Datetime("us"),
    "variable": pl.String,
    "value": pl.Float64,
    "category": pl.String,
    "itemid": pl.Int64,
    "source": pl.String,
}


def _in_window(hours: int) -> pl.Expr:
    elapsed = pl.col("charttime") - pl.col("intime")
    return (elapsed >= pl.duration(hours=0)) & (elapsed < pl.duration(hours=hours))


def _hour() -> pl.Expr:
    return ((pl.col("charttime") - pl.col("intime")).dt.total_seconds() // 3600).cast(pl.Int16).alias("hour")


def windowed_chart_events(chartevents: pl.LazyFrame, stays: pl.LazyFrame, items: pl.DataFrame, hours: int) -> pl.LazyFrame:
    """Chart events of the variables in each stay's window.

    Events without a stay id (some MIMIC-III rows) are placed by admission and time.
    """
    chart_items = items.filter(pl.col("source") == "chartevents").drop("source").lazy()
    events = chartevents.join(chart_items, on="itemid", how="inner")
    window = stays.select("stay_id", "hadm_id", "intime")
    by_stay = events.filter(pl.col("stay_id").is_not_null()).drop("hadm_id").join(
        window.drop("hadm_id"), on="stay_id", how="inner"
    )
    by_admission = events.filter(pl.col("stay_id").is_null()).drop("stay_id").join(window, on="hadm_id", how="inner")
    columns = ["stay_id", "intime", "charttime", "itemid", "variable", "value", "valuenum", "valueuom"]
    return (
        pl.concat([by_stay.select(columns), by_admission.select(columns)])
        .filter(_in_window(hours))
        .with_columns(pl.lit("chartevents").alias("source"))
    )


def windowed_lab_events(labevents: pl.LazyFrame, stays: pl.LazyFrame, items: pl.DataFrame, hours: int) -> pl.LazyFrame:
    """Lab events of the variables in each stay's window (labs have no stay id: matched by patient and time)."""
    lab_items = items.filter(pl.col("source") == "labevents").drop("source").lazy()
    window = stays.select("stay_id", "subject_id", "intime")
    return (
        labevents.join(lab_items, on="itemid", how="inner")
        .join(window, on="subject_id", how="inner")
        .filter(_in_window(hours))
        .select("stay_id", "intime", "charttime", "itemid", "variable", "value", "valuenum", "valueuom")
        .with_columns(pl.lit("labevents").alias("source"))
    )


def numeric_value(variable: Variable) -> pl.Expr:
    """The value in the variable's unit, null when outside the outlier bounds, clipped to the valid bounds."""
    value = pl.coalesce(pl.col("valuenum"), pl.col("value").str.strip_chars().cast(pl.Float64, strict=False))
    for conv in variable.conversions:
        applies = pl.lit(False)
        if conv.items:
            applies = applies | pl.col("itemid").is_in(list(conv.items))
        if conv.units:
            applies = applies | pl.col("valueuom").str.strip_chars().is_in(list(conv.units)).fill_null(False)
        if conv.above is not None:
            applies = applies | (value > conv.above)
        if conv.at_most is not None:
            applies = applies | (value <= conv.at_most)
        value = pl.when(applies.fill_null(False)).then(value * conv.scale + conv.offset).otherwise(value)
    low, high = variable.outlier
    valid_low, valid_high = variable.valid
    return pl.when((value < low) | (value > high)).then(None).otherwise(value.clip(valid_low, valid_high))


def category_lookups(variables: list[Variable]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tables mapping (variable, charted text) and (variable, numeric score) to (category, score).

    Joins against these stream in bounded memory, where per-row replacement expressions do not.
    """
    by_text, by_score = [], []
    for v in (v for v in variables if v.is_categorical):
        texts = {c: c for c in v.categories} | v.aliases
        by_text += [(v.name, text, category, v.scores[category]) for text, category in texts.items()]
        by_score += [(v.name, score, category, score) for score, category in v.category_of_score().items()]
    schema = {"variable": pl.String, "_key": pl.String, "_category": pl.String, "_score": pl.Float64}
    return (
        pl.DataFrame(by_text, schema=schema, orient="row"),
        pl.DataFrame(by_score, schema=schema | {"_key": pl.Int64}, orient="row"),
    )


def categorise(events: pl.LazyFrame, variables: list[Variable]) -> pl.LazyFrame:
    """Add ``_category`` and ``_score``: the charted text as a category (by text or alias, else by score)."""
    by_text, by_score = category_lookups(variables)
    text = pl.col("value").str.strip_chars()
    score = pl.coalesce(pl.col("valuenum"), text.cast(pl.Float64, strict=False)).round(0).cast(pl.Int64, strict=False)
    return (
        events.with_columns(text.alias("_text"), score.alias("_number"))
        .join(by_text.lazy(), left_on=["variable", "_text"], right_on=["variable", "_key"], how="left")
        .join(
            by_score.lazy().rename({"_category": "_category_by_score", "_score": "_score_by_score"}),
            left_on=["variable", "_number"], right_on=["variable", "_key"], how="left",
        )
        .with_columns(
            pl.coalesce("_category", "_category_by_score").alias("_category"),
            pl.coalesce("_score", "_score_by_score").alias("_score"),
        )
        .drop("_text", "_number", "_category_by_score", "_score_by_score")
    )


def extract_events(
    chartevents: pl.LazyFrame,
    labevents: pl.LazyFrame | None,
    stays: pl.LazyFrame,
    variables: list[Variable],
    hours: int,
) -> pl.LazyFrame:
    """The long events table of the window: one row per usable value (see ``EVENT_SCHEMA``)."""
    items = item_table(variables)
    frames = [windowed_chart_events(chartevents, stays, items, hours)]
    if labevents is not None:
        frames.append(windowed_lab_events(labevents, stays, items, hours))
    value = pl.col("_score")
    for v in (v for v in variables if not v.is_categorical):
        value = pl.when(pl.col("variable") == v.name).then(numeric_value(v)).otherwise(value)
    return (
        categorise(pl.concat(frames), variables)
        .with_columns(value.alias("_value"), _hour())
        .filter(pl.col("_value").is_not_null())
        .select(
            "stay_id", "hour", "charttime", "variable",
            pl.col("_value").alias("value"), pl.col("_category").alias("category"), "itemid", "source",
        )
        .cast(EVENT_SCHEMA)
        # joins run in parallel and leave rows in any order: a total order makes two runs write the same bytes
        .sort("stay_id", "charttime", "variable", "source", "itemid", "value", "category", nulls_last=True)
    )


def hourly_table(events: pl.LazyFrame, variables: list[Variable]) -> pl.LazyFrame:
    """One row per stay and charted hour: the last value of each variable in that hour (raw units).

    Numeric variables are Float64 columns, categorical ones their category as String. Where the GCS
    total is missing but all three components were charted in the hour, it is their sum (MetaVision
    does not chart the total).
    """
    ordered = events.sort("stay_id", "hour", "charttime", "source", "itemid", "value")
    aggregations = [
        pl.col("category" if v.is_categorical else "value").filter(pl.col("variable") == v.name).last().alias(v.name)
        for v in variables
    ]
    table = ordered.group_by("stay_id", "hour").agg(aggregations)
    return _derive_gcs_total(table, variables).sort("stay_id", "hour")


def _derive_gcs_total(table: pl.LazyFrame, variables: list[Variable]) -> pl.LazyFrame:
    by_name = {v.name: v for v in variables}
    parts = ("gcs_eye", "gcs_motor", "gcs_verbal")
    if "gcs_total" not in by_name or not all(p in by_name for p in parts):
        return table
    total = sum(
        pl.col(p).replace_strict(by_name[p].scores, default=None, return_dtype=pl.Int64) for p in parts
    )
    derived = total.clip(3, 15).cast(pl.String)
    allowed = list(by_name["gcs_total"].categories)
    derived = pl.when(derived.is_in(allowed)).then(derived)
    return table.with_columns(pl.coalesce(pl.col("gcs_total"), derived).alias("gcs_total"))


def observed_statistics(hourly: pl.DataFrame, cohort: pl.DataFrame, variables: list[Variable]) -> dict:
    """Training-split statistics of the observed hourly values: imputation and normalisation use only these."""
    train = hourly.join(cohort.filter(pl.col("split") == "train").select("stay_id"), on="stay_id", how="semi")
    stats: dict = {"numeric": {}, "categorical": {}}
    for v in variables:
        if v.is_categorical:
            stats["categorical"][v.name] = {"fill": v.normal, "categories": list(v.categories)}
            continue
        column = train.get_column(v.name).drop_nulls()
        observed = column.len() > 0
        mean = float(column.mean()) if observed else float(v.normal)
        std = float(column.std()) if column.len() > 1 else 0.0
        stats["numeric"][v.name] = {
            "fill": float(column.median()) if observed else float(v.normal),
            "mean": mean,
            "std": std if std > 1e-8 else 1.0,
            "observed_train_hours": int(column.len()),
        }
    ages = cohort.filter(pl.col("split") == "train").get_column("age")
    stats["age"] = {"mean": float(ages.mean()), "std": float(ages.std() or 1.0) or 1.0}
    return stats


def build_features(
    hourly: pl.DataFrame, cohort: pl.DataFrame, variables: list[Variable], hours: int, stats: dict
) -> np.ndarray:
    """The model input: stays (in cohort order) x hours x inputs, float32.

    Each variable is forward-filled within the stay, then filled with the training median (numeric) or
    its normal category; numeric values, and age, are z-scored with training statistics.
    """
    grid = cohort.select("stay_id", "age", "sex").join(
        pl.DataFrame({"hour": np.arange(hours, dtype=np.int16)}), how="cross"
    )
    table = grid.join(hourly, on=["stay_id", "hour"], how="left").sort("stay_id", "hour")
    names = [v.name for v in variables]
    table = table.with_columns(pl.col(names).forward_fill().over("stay_id"))
    columns: list[pl.Expr] = []
    for v in variables:
        if v.is_categorical:
            filled = pl.col(v.name).fill_null(pl.lit(stats["categorical"][v.name]["fill"]))
            columns += [(filled == c).cast(pl.Float32).alias(f"{v.name}={c}") for c in v.categories]
        else:
            s = stats["numeric"][v.name]
            filled = pl.col(v.name).fill_null(s["fill"])
            columns.append(((filled - s["mean"]) / s["std"]).cast(pl.Float32).alias(v.name))
    columns.append(((pl.col("age") - stats["age"]["mean"]) / stats["age"]["std"]).cast(pl.Float32).alias("age"))
    columns.append((pl.col("sex") == "M").cast(pl.Float32).alias("sex_male"))
    matrix = table.select(columns).to_numpy().astype(np.float32, copy=False)
    order = cohort.get_column("stay_id").to_numpy()
    if not np.array_equal(np.sort(order), order):
        raise ValueError("cohort must be sorted by stay_id")
    n_features = len(feature_names(variables))
    return matrix.reshape(cohort.height, hours, n_features)
