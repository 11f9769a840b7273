"""Datasets without notes, or with few: text stages run on empty inputs, text models without any of their text
are skipped with a reason, those with some of it train on what they have, and the tables say how many stays had
text and what each model read."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import polars as pl
import pytest
import torch

from emerge_ehr import stages
from emerge_ehr.data.notes import NOTE_SCHEMA
from emerge_ehr.evaluate.report import (
    comparison_table, evaluate_predictions, markdown_table, paper_markdown, paper_table, write_json,
)
from emerge_ehr.model.train import HISTORY_SCHEMA, PREDICTION_SCHEMA
from emerge_ehr.kg.retrieve import CONTEXT_SCHEMA
from emerge_ehr.text.embed import EMBEDDING_ARRAYS, node_lines, note_chunks, text_arrays

from conftest import DEFAULTS, REPO, train_settings
from workflow_helpers import load_config, planned_rules, snakemake

N_STAYS, DIM, SLOTS, NODES = 120, 8, 2, 3
SPLITS = ["train"] * 80 + ["val"] * 20 + ["test"] * 20


def _cohort(tmp_path):
    labels = np.random.default_rng(0).integers(0, 2, N_STAYS).astype(np.int8)
    cohort = pl.DataFrame({"stay_id": np.arange(N_STAYS) + 100, "mortality": labels, "split": SPLITS})
    cohort.write_parquet(tmp_path / "cohort.parquet")
    np.save(tmp_path / "features.npy", np.random.default_rng(1).normal(size=(N_STAYS, 48, 61)).astype(np.float32))


def _embeddings(tmp_path, stays_with_note: list[int], stays_with_summary: list[int],
                stays_with_nodes: list[int] | None = None) -> str:
    """Text arrays as the embed stage writes them; every stay has a summary token, some with knowledge; the
    stays with nodes (by default those with knowledge) have two node tokens."""
    rng = np.random.default_rng(2)
    notes_mask = np.zeros((N_STAYS, SLOTS), bool)
    notes_mask[stays_with_note, 0] = True
    nodes_mask = np.zeros((N_STAYS, NODES), bool)
    nodes_mask[stays_with_summary if stays_with_nodes is None else stays_with_nodes, :2] = True
    knowledge = np.zeros(N_STAYS, bool)
    knowledge[stays_with_summary] = True
    path = tmp_path / "mortality.npz"
    np.savez(path, notes=rng.normal(size=(N_STAYS, SLOTS, DIM)).astype(np.float32) * notes_mask[..., None],
             notes_mask=notes_mask, summary=rng.normal(size=(N_STAYS, DIM)).astype(np.float32),
             summary_mask=np.ones(N_STAYS, bool), summary_has_knowledge=knowledge,
             knowledge=rng.normal(size=(N_STAYS, DIM)).astype(np.float32), knowledge_mask=np.ones(N_STAYS, bool),
             knowledge_has_findings=knowledge,
             nodes=rng.normal(size=(N_STAYS, NODES, DIM)).astype(np.float32) * nodes_mask[..., None],
             nodes_mask=nodes_mask)
    return str(path)


def _train(tmp_path, model: str, embeddings: str | None, name: str | None = None) -> dict:
    settings = asdict(train_settings(model=model, hidden_size=8, max_epochs=2, patience=1, batch_size=64,
                                     device="cpu"))
    out = tmp_path / (name or model)
    stages.train(str(tmp_path / "features.npy"), embeddings, str(tmp_path / "cohort.parquet"), "mortality", settings,
                 out, threads=1)
    return json.loads((out / "summary.json").read_text())


def test_text_model_without_notes_is_skipped_with_every_output_in_its_schema(tmp_path):
    _cohort(tmp_path)
    embeddings = _embeddings(tmp_path, [], list(range(N_STAYS)))
    summary = _train(tmp_path, "note_only", embeddings)
    assert summary["skipped"] == "no stay has a note usable for mortality"
    assert summary["text"] == {"stays": N_STAYS, "notes": {"stays": 0, "share": 0.0},
                               "summary": {"stays": N_STAYS, "share": 1.0},
                               "knowledge": {"stays": N_STAYS, "share": 1.0},
                               "nodes": {"stays": N_STAYS, "share": 1.0}}
    assert summary["train_stays"] == 80 and summary["train_fraction"] == 1.0
    out = tmp_path / "note_only"
    predictions = pl.read_parquet(out / "predictions.parquet")
    assert predictions.height == 0 and dict(predictions.schema) == PREDICTION_SCHEMA
    assert pl.read_csv(out / "history.csv").columns == list(HISTORY_SCHEMA)
    assert torch.load(out / "model.pt", weights_only=False)["skipped"] == summary["skipped"]
    # The summaries carry knowledge from abnormal values: the models that read only them and the series train.
    assert "skipped" not in _train(tmp_path, "ts_summary", embeddings)
    assert "skipped" not in _train(tmp_path, "gru", None)


def test_emerge_without_notes_trains_on_the_series_and_the_summary_and_says_so(tmp_path):
    """The MIMIC-III demo as distributed has no notes: EMERGE still has a time series and a summary per stay,
    so it trains on those (notes masked), staged or joint, and its tables say what it read."""
    _cohort(tmp_path)
    embeddings = _embeddings(tmp_path, [], list(range(N_STAYS)))
    for model in ("emerge", "emerge_joint", "emerge_late", "emerge_concat"):
        trained = _train(tmp_path, model, embeddings)
        assert "skipped" not in trained and trained["inputs"] == "no notes: series + summary", model
        assert pl.read_parquet(tmp_path / model / "predictions.parquet").height == 40
    assert "inputs" not in _train(tmp_path, "ts_summary", embeddings)
    assert _train(tmp_path, "emerge_knowledge", embeddings)["inputs"] == "no notes: series + knowledge text"


def test_knowledge_models_are_skipped_without_findings_and_train_with_them(tmp_path):
    _cohort(tmp_path)
    nothing_found = _embeddings(tmp_path, [], [])  # every stay has the nothing-found sentence only
    reason = "no stay has an abnormal finding or a matched condition for mortality"
    assert _train(tmp_path, "ts_knowledge", nothing_found)["skipped"] == reason
    assert _train(tmp_path, "emerge_knowledge", nothing_found)["skipped"] == (
        f"no stay has a note usable for mortality; {reason}")  # none of its texts: nothing to add to the GRU
    trained = _train(tmp_path, "knowledge_only", _embeddings(tmp_path, [], list(range(N_STAYS))))
    assert "skipped" not in trained and trained["text"]["knowledge"] == {"stays": N_STAYS, "share": 1.0}


def test_node_models_are_skipped_without_a_training_stay_with_nodes_and_train_with_them(tmp_path):
    _cohort(tmp_path)
    reason = "no stay has a retrieved knowledge-graph node for mortality"
    no_nodes = _embeddings(tmp_path, list(range(N_STAYS)), list(range(N_STAYS)), [])
    assert _train(tmp_path, "ts_nodes", no_nodes)["skipped"] == reason
    assert _train(tmp_path, "emerge_nodes", _embeddings(tmp_path, [], [], []))["skipped"] == (
        f"no stay has a note usable for mortality; {reason}")
    only_test = _train(tmp_path, "ts_nodes", _embeddings(tmp_path, [], [], [110, 115]), "only_test")
    assert only_test["skipped"] == "no training stay has a retrieved knowledge-graph node for mortality"
    assert only_test["text"]["nodes"] == {"stays": 2, "share": 2 / N_STAYS}
    # Nodes need no knowledge text of findings nor a summary: a stay's node tokens are enough.
    trained = _train(tmp_path, "ts_nodes", _embeddings(tmp_path, [], [], [3, 50, 110]), "few")
    assert "skipped" not in trained and trained["epochs_run"] == 4  # staged: two epochs of the GRU, two of the text
    assert trained["text"]["nodes"] == {"stays": 3, "share": 3 / N_STAYS}
    assert pl.read_parquet(tmp_path / "few" / "predictions.parquet").height == 40


def test_few_notes_train_normally_and_notes_outside_training_do_not_count(tmp_path):
    _cohort(tmp_path)
    few = _train(tmp_path, "note_only", _embeddings(tmp_path, [3, 50, 110], []))
    assert "skipped" not in few and few["epochs_run"] == 2
    assert few["text"]["notes"] == {"stays": 3, "share": 3 / N_STAYS}
    assert pl.read_parquet(tmp_path / "note_only" / "predictions.parquet").height == 40
    only_test = _train(tmp_path, "ts_note", _embeddings(tmp_path, [110], []), "only_test")
    assert only_test["skipped"] == "no training stay has a note usable for mortality"
    no_summary = _train(tmp_path, "emerge", _embeddings(tmp_path, [], []), "nothing")  # neither text it reads
    assert no_summary["skipped"] == ("no stay has a note usable for mortality; no stay has a non-empty summary for"
                                     " mortality")


def test_a_model_reading_only_notes_is_n_a_on_a_dataset_without_notes_not_a_constant_auroc(tmp_path):
    """External validation on a dataset without notes (the MIMIC-III demo): a notes-only model has nothing to
    read there, so its tables say n/a and why, instead of an AUROC of 50 from one constant prediction."""
    from emerge_ehr.evaluate.external import _cell
    from emerge_ehr.report_stages import external_predictions

    _cohort(tmp_path)
    developed = _embeddings(tmp_path, list(range(N_STAYS)), list(range(N_STAYS)))
    target = tmp_path / "target"
    target.mkdir()
    _cohort(target)
    without_notes = _embeddings(target, [], list(range(N_STAYS)))
    results = {}
    for model in ("note_only", "ts_note"):
        _train(tmp_path, model, developed)
        out = target / "external" / model
        external_predictions(str(tmp_path / model / "model.pt"), str(tmp_path / model / "summary.json"),
                             str(target / "features.npy"), without_notes, str(target / "cohort.parquet"), "mortality",
                             str(out))
        results[model] = evaluate_predictions([str(out / "predictions.parquet")], "mortality", model, 50, 0.95, 0)
    reason = f"the model reads notes only, and none of the {N_STAYS} stays has any"
    assert results["note_only"]["not_applicable"] == reason and "metrics" not in results["note_only"]
    assert pl.read_parquet(target / "external/note_only/predictions.parquet").height == 0
    assert _cell(results["note_only"], "auroc") == f"n/a: {reason}"
    # the series is there: a model reading it and notes is evaluated on every labelled stay
    assert "not_applicable" not in results["ts_note"] and results["ts_note"]["test_stays"] == N_STAYS


def _run(tmp_path, model: str, probabilities: np.ndarray | None, skipped: str | None = None,
         inputs: str | None = None) -> list[str]:
    """One seed's predictions and summary.json as the train job writes them."""
    out = tmp_path / model / "seed0"
    out.mkdir(parents=True)
    test = np.arange(40)
    labels = (test % 3 == 0).astype(np.int8)
    frame = pl.DataFrame(schema=PREDICTION_SCHEMA) if skipped else pl.DataFrame(
        {"stay_id": test, "split": ["test"] * 40, "label": labels, "probability": probabilities},
        schema=PREDICTION_SCHEMA)
    frame.write_parquet(out / "predictions.parquet")
    text = {"stays": 200, "notes": {"stays": 0, "share": 0.0}, "summary": {"stays": 150, "share": 0.75}}
    summary = {"train_stays": 140} | ({"skipped": skipped} if skipped else {}) | (
        {"text": text} if model != "gru" else {}) | ({"inputs": inputs} if inputs else {})
    (out / "summary.json").write_text(json.dumps(summary))
    return [str(out / "predictions.parquet")]


def test_skipped_models_carry_their_reason_into_metrics_and_tables(tmp_path):
    rng = np.random.default_rng(0)
    labels = (np.arange(40) % 3 == 0).astype(float)
    gru = _run(tmp_path, "gru", np.clip(0.3 * labels + rng.random(40) * 0.7, 0, 1))
    ts_summary = _run(tmp_path, "ts_summary", rng.random(40))
    reason = "no stay has a note usable for mortality"
    note_only = _run(tmp_path, "note_only", None, reason)
    emerge = _run(tmp_path, "emerge", rng.random(40), inputs="no notes: series + summary")
    results = {
        "emerge": evaluate_predictions(emerge, "mortality", "emerge", 50, 0.95, 0, gru, "gru"),
        "gru": evaluate_predictions(gru, "mortality", "gru", 50, 0.95, 0),
        "ts_summary": evaluate_predictions(ts_summary, "mortality", "ts_summary", 50, 0.95, 0, gru, "gru"),
        "note_only": evaluate_predictions(note_only, "mortality", "note_only", 50, 0.95, 0, gru, "gru"),
        # a skipped reference gives its reason, not a crash
        "against_skipped": evaluate_predictions(gru, "mortality", "gru", 50, 0.95, 0, note_only, "note_only"),
    }
    assert results["note_only"] == {"task": "mortality", "model": "note_only", "seeds": 1, "folds": 1,
                                    "skipped": reason, "text": json.loads((tmp_path / "note_only/seed0/summary.json").read_text())["text"]}
    assert results["against_skipped"]["versus_reference"] == {"model": "note_only", "skipped": reason}
    assert results["ts_summary"]["text"]["summary"]["stays"] == 150 and "text" not in results["gru"]
    files = []
    assert results["emerge"]["inputs"] == "no notes: series + summary" and "inputs" not in results["ts_summary"]
    for model in ("gru", "ts_summary", "note_only", "emerge"):
        write_json(results[model], tmp_path / f"{model}.json")
        files.append(tmp_path / f"{model}.json")
    table = comparison_table(files)
    assert table.filter(pl.col("model") == "note_only").select("skipped", "auroc", "stays_with_note").row(0) == (
        reason, None, 0)
    markdown = markdown_table(table)
    assert f"| mortality | note_only | - | - | skipped: {reason} | - | - | - | - |" in markdown
    assert "| mortality | emerge (no notes: series + summary) | 40 |" in markdown
    assert "50.00 [50.00, 50.00]" not in markdown
    assert ("Stays with text (mortality): 0 of 200 (0.0 %) with a note usable for the task, 150 of 200 (75.0 %)"
            " with a non-empty summary,") in markdown
    paper = paper_table(files, ["gru", "ts_summary", "note_only", "emerge"], ["mortality"])
    assert paper.get_column("mortality_skipped").to_list() == [None, None, reason, None]
    paper_md = paper_markdown(paper, ["mortality"], "gru", 0.95)
    assert f"| note_only | skipped: {reason} | - | - | - |" in paper_md
    assert "emerge, mortality: no notes: series + summary." in paper_md


def test_scarcity_and_plots_leave_skipped_runs_out(tmp_path):
    from emerge_ehr.evaluate.plots import plot_task
    from emerge_ehr.evaluate.scarcity import plot_scarcity, scarcity_table

    gru = _run(tmp_path, "gru", np.random.default_rng(0).random(40))
    emerge = _run(tmp_path, "emerge", None, "no training stay has a note usable for mortality")
    table = scarcity_table({"gru": {100: gru}, "emerge": {100: emerge}}, "mortality", 20, 0.95, 0)
    assert table.select("model", "skipped", "train_stays").rows() == [
        ("gru", None, 140.0), ("emerge", "no training stay has a note usable for mortality", 140.0)]
    plot_scarcity(table, "mortality", "test split", tmp_path / "scarcity.png")
    plot_task("mortality", {"gru": gru, "emerge": emerge}, *(str(tmp_path / f"{n}.png") for n in ("roc", "pr", "cal")))
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("scarcity", "roc", "pr", "cal"))


def test_no_notes_give_masked_note_slots_and_summaries_without_knowledge_are_flagged():
    notes = pl.DataFrame(schema=NOTE_SCHEMA)
    chunks = note_chunks(notes, "mortality", 10, SLOTS)
    assert chunks.height == 0
    summaries = pl.DataFrame({"stay_id": [1, 2], "status": ["ok", "empty"]})
    knowledge = pl.DataFrame({"stay_id": [3, 2, 1], "status": ["ok", "empty", "empty"]})
    no_nodes = node_lines(pl.DataFrame(schema=CONTEXT_SCHEMA), "mortality", NODES)
    arrays = text_arrays(np.array([1, 2, 3]), chunks, np.zeros((0, DIM), np.float32), summaries,
                         np.ones((2, DIM), np.float32), knowledge, np.ones((3, DIM), np.float32), no_nodes,
                         np.zeros((0, DIM), np.float32), SLOTS, NODES, DIM)
    assert not arrays["notes_mask"].any() and arrays["notes"].shape == (3, SLOTS, DIM)
    assert arrays["summary_mask"].tolist() == [True, True, False]
    assert arrays["summary_has_knowledge"].tolist() == [True, False, False]
    assert arrays["knowledge_mask"].tolist() == [True, True, True]
    assert arrays["knowledge_has_findings"].tolist() == [False, False, True]
    assert not arrays["nodes_mask"].any() and arrays["nodes"].shape == (3, NODES, DIM)
    assert tuple(arrays) == EMBEDDING_ARRAYS  # the embed rule reruns when this changes


def test_node_tokens_follow_the_cohort_order_and_the_rank_order():
    context = pl.DataFrame([
        ("mortality", 1, [5, 6, 7, 8], ["A", "B", "C", "D"], "A: first.\nB\nC: third.\nD: fourth."),
        ("mortality", 2, [], [], ""),  # nothing retrieved: no tokens
        ("mortality", 3, [6], ["B"], "B"),
        ("readmission", 2, [5], ["A"], "A: first."),  # another task's nodes are not read
    ], schema={k: CONTEXT_SCHEMA[k] for k in ("task", "stay_id", "node_indices", "node_names", "definitions")},
        orient="row")
    lines = node_lines(context, "mortality", NODES)
    assert lines.rows() == [(1, 0, "A: first."), (1, 1, "B"), (1, 2, "C: third."), (3, 0, "B")]  # at most NODES
    vectors = np.arange(len(lines), dtype=np.float32)[:, None] + np.zeros((1, DIM), np.float32)
    empty = pl.DataFrame(schema={"stay_id": pl.Int64, "status": pl.String})
    arrays = text_arrays(np.array([3, 2, 1]), note_chunks(pl.DataFrame(schema=NOTE_SCHEMA), "mortality", 10, SLOTS),
                         np.zeros((0, DIM), np.float32), empty, np.zeros((0, DIM), np.float32), empty,
                         np.zeros((0, DIM), np.float32), lines, vectors, SLOTS, NODES, DIM)
    assert arrays["nodes_mask"].tolist() == [[True, False, False], [False, False, False], [True, True, True]]
    assert arrays["nodes"][:, :, 0].tolist() == [[3, 0, 0], [0, 0, 0], [0, 1, 2]]  # rows in cohort order
    with pytest.raises(ValueError, match=r"stay 1 \(mortality\): 2 definition lines for 4 nodes"):
        node_lines(context.with_columns(pl.lit("A\nB").alias("definitions")), "mortality", NODES)


def test_llm_entities_of_no_notes_is_an_empty_table_without_calls(tmp_path):
    from emerge_ehr.llm.backends import LLMSettings
    from emerge_ehr.llm.stages import llm_entities

    pl.DataFrame(schema=NOTE_SCHEMA).write_parquet(tmp_path / "notes.parquet")
    llm = asdict(LLMSettings.from_config(DEFAULTS, backend="openai", model="unused",
                                         base_url="http://127.0.0.1:9/v1"))  # never contacted
    llm_entities(str(tmp_path / "notes.parquet"), str(REPO / "config" / "abbreviations.yaml"), 0, 1, llm,
                 {"chunk_words": 100, "max_chunks": 2, "max_tokens": 32}, str(tmp_path), str(tmp_path / "e.parquet"),
                 str(tmp_path / "e.json"))
    assert pl.read_parquet(tmp_path / "e.parquet").height == 0
    assert json.loads((tmp_path / "e.json").read_text()) == {"prompts": 0, "retries": 0, "failures": 0,
                                                            "failure_reasons": {}}


@pytest.mark.slow
def test_workflow_on_a_dataset_without_notes(tmp_path):
    """A MIMIC-IV database without its note module runs end to end, the summaries written by the real engine:
    note models skipped, the others trained, EMERGE on what it has."""
    pytest.importorskip("vllm")
    from emerge_ehr.data.synthetic import generate

    root = tmp_path / "mimic4-without-notes"
    generate(root, layout="mimic4", n_patients=60, seed=3)
    shutil.rmtree(root / "note")
    config = load_config("tiny-mimic4.yaml", tmp_path)
    config |= {
        "datasets": {"nonotes": {"kind": "mimic4", "root": str(root)}},
        "tasks": ["mortality"],
        "models": ["gru", "note_only", "ts_summary", "emerge"],
        "scarcity": {"models": []},
    }
    config["train"] |= {"seeds": [0], "max_epochs": 2, "patience": 1}
    config["evaluate"]["bootstrap_resamples"] = 20
    wanted = [f"results/nonotes/metrics/{name}.md" for name in ("summary", "paper_table")] + [
        "results/nonotes/plots/mortality/roc.png"]
    snakemake(tmp_path, config, *wanted)
    results = tmp_path / "results" / "nonotes"
    assert pl.read_parquet(results / "notes.parquet").height == 0
    assert "notes: 0 source notes" in (tmp_path / "logs" / "nonotes" / "notes.log").read_text()
    metrics = {m: json.loads((results / "metrics" / "mortality" / f"{m}.json").read_text()) for m in config["models"]}
    reason = "no stay has a note usable for mortality"
    assert metrics["note_only"]["skipped"] == reason
    # EMERGE has a series and a summary per stay: it trains on those and says so (ts_summary has all it reads)
    assert "skipped" not in metrics["emerge"] and metrics["emerge"]["inputs"] == "no notes: series + summary"
    assert "inputs" not in metrics["ts_summary"]
    assert metrics["note_only"]["text"]["notes"] == {"stays": 0, "share": 0.0}
    stays = metrics["note_only"]["text"]["stays"]
    gru = json.loads((results / "models" / "mortality" / "gru" / "seed0" / "summary.json").read_text())
    assert gru["epochs_run"] == 2 and "skipped" not in metrics["gru"] and metrics["gru"]["test_stays"] > 0
    # Abnormal values still reach the summaries, so the summary model has text and trains.
    assert "skipped" not in metrics["ts_summary"] and metrics["ts_summary"]["text"]["summary"]["stays"] > 0
    table = (results / "metrics" / "summary.md").read_text()
    assert f"| mortality | note_only | - | - | skipped: {reason} |" in table
    assert f"Stays with text (mortality): 0 of {stays} (0.0 %) with a note usable for the task" in table
    assert "| mortality | emerge (no notes: series + summary" in table  # then what its text stage kept, if said
    assert "emerge, mortality: no notes: series + summary." in (results / "metrics" / "paper_table.md").read_text()
    assert planned_rules(snakemake(tmp_path, config, "--dry-run", *wanted)) == set()


def test_a_test_split_with_one_class_says_so_instead_of_n_a(tmp_path):
    """The MIMIC-III demo's readmission test split has 5 labelled stays and no positive: AUROC and AUPRC are
    undefined, and the tables say why rather than "n/a ± n/a"."""
    out = tmp_path / "gru" / "seed0"
    out.mkdir(parents=True)
    pl.DataFrame({"stay_id": np.arange(5), "split": ["test"] * 5, "label": np.zeros(5, np.int8),
                  "probability": np.linspace(0.1, 0.5, 5)}, schema=PREDICTION_SCHEMA).write_parquet(
        out / "predictions.parquet")
    (out / "summary.json").write_text(json.dumps({"train_stays": 20}))
    write_json(evaluate_predictions([str(out / "predictions.parquet")], "readmission", "gru", 20, 0.95, 0),
               tmp_path / "gru.json")
    reason = "n/a: 5 labelled test stays, none positive"
    assert f"| readmission | gru | 5 | 0.0% | {reason} | - |" in markdown_table(comparison_table([tmp_path / "gru.json"]))
    paper = paper_markdown(paper_table([tmp_path / "gru.json"], ["gru"], ["readmission"]), ["readmission"], None,
                           0.95)
    assert f"| gru | {reason} | - | - |" in paper and "n/a ± n/a" not in paper
