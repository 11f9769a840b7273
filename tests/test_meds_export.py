"""The MEDS export: every file in the `meds` and meds-evaluation schemas (read back from disk), shards sorted,
the cohort's stays, labels and predictions the same as the workflow's, meds-evaluation's AUROC equal to ours, and
ACES's task configs (config/tasks/) on the export giving its labels."""

from __future__ import annotations

import datetime as dt
import json

import meds
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from flexible_schema import SchemaValidationError, TableValidationError
from meds_evaluation.evaluate import evaluate_binary_classification
from meds_evaluation.schema import PredictionSchema

from emerge_ehr.data.tables import InputError
from emerge_ehr.evaluate.metrics import auroc
from emerge_ehr.meds import tools
from emerge_ehr.meds.export import SPLITS, write_in_chunks, write_validated
from emerge_ehr.meds.predictions import check_unique_keys, prediction_rows, skipped_reason, write_predictions

from workflow_helpers import load_config, planned_rules, snakemake

TASKS = ("mortality", "readmission")


def read_dataset(root) -> pl.DataFrame:
    """Every shard, validated as written, with its split; the metadata files validated too."""
    meds.DatasetMetadataSchema.validate(json.loads((root / meds.dataset_metadata_filepath).read_text()))
    meds.CodeMetadataSchema.validate(pq.read_table(root / meds.code_metadata_filepath))
    meds.SubjectSplitSchema.validate(pq.read_table(root / meds.subject_splits_filepath))
    shards = []
    for split in SPLITS.values():
        table = pq.read_table(root / meds.data_subdirectory / split / "0.parquet")
        meds.DataSchema.validate(table)
        shards.append(pl.from_arrow(table).with_columns(shard=pl.lit(split)))
    return pl.concat(shards)


def check_shards(data: pl.DataFrame, root) -> None:
    """Subjects contiguous, in the shard of their split, time sorted with static rows first; codes described."""
    for _, shard in data.group_by("shard"):
        runs = (shard.get_column("subject_id").diff().fill_null(1) != 0).sum()
        assert runs == shard.get_column("subject_id").n_unique()  # each subject is one contiguous block
        for _, rows in shard.group_by("subject_id"):
            times = rows.get_column("time")
            assert times.null_count() == 0 or times.head(times.null_count()).is_null().all()
            assert times.drop_nulls().is_sorted()
    splits = pl.read_parquet(root / meds.subject_splits_filepath)
    placed = data.select("subject_id", "shard").unique()
    assert placed.height == splits.height and placed.join(splits, left_on=["subject_id", "shard"],
                                                          right_on=["subject_id", "split"]).height == splits.height
    codes = pl.read_parquet(root / meds.code_metadata_filepath)
    assert set(data.get_column("code")) == set(codes.get_column("code"))
    assert codes.get_column("description").null_count() == 0


def check_labels(root, cohort: pl.DataFrame) -> None:
    for task in TASKS:
        labels = pq.read_table(root / "labels" / f"{task}.parquet")
        meds.LabelSchema.validate(labels)
        stays = pl.read_parquet(root / "labels" / f"{task}_stays.parquet")
        joined = pl.from_arrow(labels).join(stays, on=["subject_id", "prediction_time"])
        assert joined.height == labels.num_rows == stays.height
        expected = cohort.filter(pl.col(task).is_not_null()).select("stay_id", "subject_id", pl.col(task) == 1)
        assert joined.select("stay_id", "subject_id", pl.col("boolean_value").alias(task)).sort("stay_id").equals(
            expected.sort("stay_id"))


@pytest.fixture(scope="module")
def tiny_meds(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("meds")
    config = load_config("tiny-mimic4.yaml", workdir)
    config["models"] = ["logreg", "oracle"]
    config["train"]["seeds"] = [0]
    config["evaluate"]["reference_model"] = "logreg"
    config["scarcity"] = {"models": []}
    config["meds"] = {"export": "always"}
    root = "results/tiny/meds"
    wanted = [f"{root}/metadata/dataset.json"] + [
        f"results/tiny/{path}" for task in TASKS for model in config["models"]
        for path in (f"meds/predictions/{task}/{model}/seed0.parquet", f"metrics/{task}/{model}.json")]
    snakemake(workdir, config, *wanted)
    return workdir / "results" / "tiny", config


@pytest.mark.slow
def test_export_validates_and_holds_the_cohort(tiny_meds):
    results, _ = tiny_meds
    root = results / "meds"
    data = read_dataset(root)
    check_shards(data, root)
    cohort = pl.read_parquet(results / "cohort.parquet")
    admitted = data.filter(pl.col("code").str.starts_with("ICU_ADMISSION//")).select(
        "subject_id", pl.col("time").alias("intime"), pl.col("icustay_id").alias("stay_id"))
    assert cohort.join(admitted, on=["subject_id", "intime", "stay_id"]).height == cohort.height
    # every ICU stay of the cohort's subjects, also those outside the cohort (readmissions stay visible)
    icustays = pl.read_parquet(results / "parquet" / "icustays.parquet").join(cohort, on="subject_id", how="semi")
    assert admitted.height == icustays.height > cohort.height
    events = pl.read_parquet(results / "events.parquet").join(cohort, on="stay_id", how="semi")
    assert data.filter(pl.col("code").str.starts_with("LAB//")).height == events.height
    assert data.filter(pl.col("code").str.starts_with("NOTE//")).height == pl.read_parquet(
        results / "notes.parquet").height
    assert data.filter(pl.col("time").is_null()).get_column("code").str.starts_with("GENDER//").all()
    check_labels(root, cohort)


@pytest.mark.slow
def test_predictions_score_the_same_in_meds_evaluation(tiny_meds):
    results, config = tiny_meds
    for task in TASKS:
        for model in config["models"]:
            table = pq.read_table(results / "meds" / "predictions" / task / model / "seed0.parquet")
            PredictionSchema.validate(table)
            frame = pl.from_arrow(table)
            y = frame.get_column("boolean_value").to_numpy()
            p32 = frame.get_column("predicted_boolean_probability").to_numpy()
            theirs = evaluate_binary_classification(frame)["samples_equally_weighted"]["roc_auc_score"]
            assert abs(theirs - auroc(y, p32)) <= 1e-12  # the same AUROC of the same float32 numbers
            # The metrics file scores the float64 probabilities. Rounding to float32 keeps their order but may tie
            # a positive and a negative stay, which moves the AUROC by half a pair each: the only difference allowed.
            source = pl.read_parquet(results / "models" / task / model / "seed0" / "predictions.parquet").filter(
                pl.col("split") == "test")
            assert frame.height == source.height
            p64 = source.get_column("probability").to_numpy()
            pos, neg = source.get_column("label").to_numpy() == 1, source.get_column("label").to_numpy() == 0
            f32 = p64.astype(np.float32)
            tied = ((f32[pos][:, None] == f32[neg][None, :]) & (p64[pos][:, None] != p64[neg][None, :])).sum()
            metrics = json.loads((results / "metrics" / task / f"{model}.json").read_text())
            assert abs(metrics["metrics"]["auroc"]["value"] - theirs) <= 0.5 * tied / (pos.sum() * neg.sum()) + 1e-12


@pytest.mark.slow
def test_aces_task_configs_on_the_export_give_its_labels(tool_venv, tiny_meds, tmp_path):
    """The loop closed: config/tasks/{task}.yaml run by ACES (.venv-meds) on the workflow's own export give exactly
    its labels/{task}.parquet, once the no-transfer filter the MEDS-Extract round trip uses is applied."""
    results, _ = tiny_meds
    root = results / "meds"
    # The configs' predicates are regex prefixes (^HOSPITAL_ADMISSION//, ^HOSPITAL_DISCHARGE//, ^ICU_ADMISSION//,
    # ^ICU_DISCHARGE//) plus HOSPITAL_DISCHARGE//DIED and MEDS_DEATH exactly: the export's codes match them.
    codes = set(pl.read_parquet(root / meds.code_metadata_filepath).get_column("code"))
    assert {c for c in codes if c.startswith("HOSPITAL_")} == {
        "HOSPITAL_ADMISSION//UNK//UNK", "HOSPITAL_DISCHARGE//DIED", "HOSPITAL_DISCHARGE//UNK"}
    assert meds.death_code in codes
    assert {c.split("//")[0] for c in codes if c.startswith("ICU_")} == {"ICU_ADMISSION", "ICU_DISCHARGE"}
    stays = tools.icu_stays(root)
    key = ["subject_id", "prediction_time"]
    for task in TASKS:
        config = tools.TASKS_DIR / f"{task}.yaml"
        aces = tools.read_aces_labels(tools.aces_labels(config, root, tmp_path / "labels"))
        kept = tools.no_transfer(tools.label_stays(aces, stays, task))
        assert kept.height < aces.height, task  # the synthetic cohort has transfers: the filter is exercised
        exported = pl.read_parquet(root / "labels" / f"{task}.parquet")
        # No filter by the exported cohort is needed: the export holds only the cohort's subjects, and none of
        # their other stays is left out of the cohort by age or by 'no chart data in the window' (criteria ACES
        # cannot express) while meeting the configs' criteria. Should one ever be, filter `kept` by
        # labels/{task}_stays.parquet and assert the rest is equal.
        assert kept.select(*key, "boolean_value").sort(key).equals(exported.sort(key)), task
        assert exported.get_column("boolean_value").any() and not exported.get_column("boolean_value").all(), task


def test_export_is_part_of_the_default_target_where_configured(tmp_path):
    config = load_config("tiny-mimic4.yaml", tmp_path)
    meds_rules = {"meds_export", "meds_labels", "meds_predictions"}
    assert not meds_rules & planned_rules(snakemake(tmp_path, config, "--dry-run"))  # auto: real datasets only
    config["meds"] = {"export": "always"}
    assert meds_rules <= planned_rules(snakemake(tmp_path, config, "--dry-run"))


def test_mimic4_demo_export_validates(tmp_path, mimic4_demo):
    """The real demo: the cohort's 47 patients; 53 stays labelled for mortality (8 deaths), 47 for readmission
    (10 positives; 6 deaths in the ICU are not at risk). `auto` exports a real dataset in the default target."""
    config = load_config("mimic4-demo.yaml", tmp_path)
    config["datasets"]["mimic4_demo"]["root"] = str(mimic4_demo)
    results = tmp_path / "results" / "mimic4_demo"
    snakemake(tmp_path, config, "results/mimic4_demo/meds/metadata/dataset.json",
              *[f"results/mimic4_demo/meds/labels/{task}.parquet" for task in TASKS])
    data = read_dataset(results / "meds")
    check_shards(data, results / "meds")
    cohort = pl.read_parquet(results / "cohort.parquet")
    assert data.get_column("subject_id").n_unique() == 47
    check_labels(results / "meds", cohort)
    counts = {task: pl.read_parquet(results / "meds" / "labels" / f"{task}.parquet").get_column("boolean_value")
              for task in TASKS}
    assert {task: (len(c), c.sum()) for task, c in counts.items()} == {"mortality": (53, 8), "readmission": (47, 10)}
    assert "meds_predictions" in planned_rules(snakemake(tmp_path, config, "--dry-run"))


def test_a_file_that_fails_its_schema_is_never_written(tmp_path):
    bad = pl.DataFrame({"subject_id": [1], "time": [None], "code": [None]},
                       schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String})
    with pytest.raises(TableValidationError):  # align casts the code column and skips its null check
        write_validated(bad, meds.DataSchema, tmp_path / "0.parquet")
    with pytest.raises(SchemaValidationError):
        write_validated(pl.DataFrame({"subject_id": [1], "split": ["train"], "stay_id": [3]}),
                        meds.SubjectSplitSchema, tmp_path / "splits.parquet")
    assert not (tmp_path / "0.parquet").exists() and not (tmp_path / "splits.parquet").exists()


def test_a_shard_written_a_few_subjects_at_a_time_equals_the_one_written_at_once(tmp_path):
    """Full MIMIC-IV's notes made the export's rows 12.6 GB in memory; chunks of subjects keep it bounded and the
    file the same: sorted by subject, every part validated, the codes and rows counted."""
    rows = pl.DataFrame({"subject_id": [1, 1, 2, 3, 3, 5], "time": [dt.datetime(2150, 1, d) for d in range(1, 7)],
                         "code": ["A", "B", "A", "C", "A", "B"], "numeric_value": [1.0, None, 2.0, None, 3.0, None]},
                        schema_overrides={"numeric_value": pl.Float32})
    subjects = pl.DataFrame({"subject_id": [1, 2, 3, 5]})
    rows_of = lambda ids: rows.join(ids, on="subject_id", how="semi")  # noqa: E731
    once = write_in_chunks(subjects, rows_of, tmp_path / "once" / "0.parquet", chunk=10)
    chunked = write_in_chunks(subjects, rows_of, tmp_path / "chunked" / "0.parquet", chunk=2)
    assert pq.ParquetFile(tmp_path / "chunked" / "0.parquet").num_row_groups == 2
    assert pl.read_parquet(tmp_path / "chunked" / "0.parquet").equals(pl.read_parquet(tmp_path / "once" / "0.parquet"))
    assert chunked["rows"] == once["rows"] == 6 and set(chunked["codes"].get_column("code")) == {"A", "B", "C"}
    empty = write_in_chunks(subjects.clear(), rows_of, tmp_path / "empty" / "0.parquet")
    assert empty["rows"] == 0 and pl.read_parquet(tmp_path / "empty" / "0.parquet").height == 0
    with pytest.raises(TableValidationError):  # a part that fails the schema leaves no file
        write_in_chunks(subjects, lambda ids: rows_of(ids).with_columns(code=pl.lit(None, pl.String)),
                        tmp_path / "bad" / "0.parquet")
    assert list((tmp_path / "bad").iterdir()) == []


def test_two_stays_with_one_label_key_are_refused():
    labels = pl.DataFrame({"subject_id": [1, 1], "prediction_time": [dt.datetime(2150, 1, 3)] * 2,
                           "boolean_value": [True, False], "stay_id": [100, 101]})
    with pytest.raises(InputError, match=r"stays \[100, 101\] share a \(subject_id, prediction_time\)"):
        check_unique_keys(labels, "mortality")


def _labelled(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(0)
    stays = pl.DataFrame({"subject_id": np.arange(n) + 10, "prediction_time": [dt.datetime(2150, 1, 3)] * n,
                          "stay_id": np.arange(n) + 100})
    labels = stays.select("subject_id", "prediction_time", pl.Series("boolean_value", rng.random(n) < 0.3))
    return labels, stays


def _run(path, stays: pl.DataFrame, labels: pl.DataFrame, split: list[str], summary: dict,
         flipped: bool = False) -> str:
    path.mkdir(parents=True)
    rows = stays.join(labels, on=["subject_id", "prediction_time"])
    probability = pl.Series("probability", np.linspace(0.05, 0.95, rows.height))
    probability = 1 - probability if flipped else probability  # another fold's model predicts otherwise
    rows.select("stay_id", pl.Series("split", split), pl.col("boolean_value").cast(pl.Int8).alias("label"),
                probability).write_parquet(path / "predictions.parquet")
    (path / "summary.json").write_text(json.dumps(summary))
    return str(path / "predictions.parquet")


def test_folds_are_pooled_out_of_fold_and_a_skipped_model_writes_no_rows_and_its_reason(tmp_path):
    labels, stays = _labelled(12)
    labels.write_parquet(tmp_path / "labels.parquet")
    stays.write_parquet(tmp_path / "stays.parquet")
    halves = [["test"] * 6 + ["val"] * 6, ["val"] * 6 + ["test"] * 6]
    folds = [_run(tmp_path / f"fold{k}", stays, labels, halves[k], {"train_stays": 6}, flipped=k == 1)
             for k in range(2)]
    write_predictions(folds, tmp_path / "labels.parquet", tmp_path / "stays.parquet", tmp_path / "pooled.parquet")
    pooled = pq.read_table(tmp_path / "pooled.parquet")
    PredictionSchema.validate(pooled)
    assert pl.from_arrow(pooled).select("subject_id", "prediction_time", "boolean_value").equals(labels)
    # each stay's prediction is the one of the fold that tested it: the first six from fold 0, the rest from fold 1
    grid = np.linspace(0.05, 0.95, 12)
    expected = np.concatenate([grid[:6], 1 - grid[6:]]).astype(np.float32)
    np.testing.assert_array_equal(pl.from_arrow(pooled).get_column("predicted_boolean_probability").to_numpy(),
                                  expected)
    skipped = _run(tmp_path / "skipped", stays, labels, ["test"] * 12, {"skipped": "no stay has a note"})
    write_predictions(skipped, tmp_path / "labels.parquet", tmp_path / "stays.parquet", tmp_path / "none.parquet")
    empty = pq.read_table(tmp_path / "none.parquet")
    PredictionSchema.validate(empty)
    assert empty.num_rows == 0 and empty.schema.field("predicted_boolean_probability").type == "float"
    # the empty file says why, so that a meds-evaluation run can leave it out; a trained model's file says nothing
    assert skipped_reason(tmp_path / "none.parquet") == "no stay has a note"
    assert skipped_reason(tmp_path / "pooled.parquet") is None


def test_predictions_of_another_cohort_are_refused():
    labels, stays = _labelled(3)
    test = pl.DataFrame({"stay_id": [100, 999], "label": [0, 1], "probability": [0.2, 0.9]})
    with pytest.raises(InputError, match=r"stays \[999\] have predictions but no MEDS label"):
        prediction_rows(test, labels.join(stays, on=["subject_id", "prediction_time"]))
