"""The EMERGE model and its ablations: shapes, masking of missing text, real attention, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from emerge_ehr.model.emerge import CrossAttention, masked_mean
from emerge_ehr.model.registry import build_model
from emerge_ehr.model.train import train
from emerge_ehr.model.variants import JOINT_MODELS, NEURAL_MODELS, VARIANTS

from conftest import train_settings


def batch(n=3, k=4, d=16, with_notes=(True, False, True), node_counts=(3, 0, 1), max_nodes=5):
    torch.manual_seed(0)
    notes_mask = torch.zeros(n, k, dtype=torch.bool)
    for i, has in enumerate(with_notes[:n]):
        notes_mask[i, : (2 if has else 0)] = True
    nodes_mask = torch.zeros(n, max_nodes, dtype=torch.bool)
    for i, count in enumerate(node_counts[:n]):
        nodes_mask[i, :count] = True
    return {
        "series": torch.randn(n, 48, 61), "notes": torch.randn(n, k, d), "notes_mask": notes_mask,
        "summary": torch.randn(n, d), "summary_mask": torch.tensor([True, True, False][:n]),
        "knowledge": torch.randn(n, d), "knowledge_mask": torch.tensor([True, False, True][:n]),
        "nodes": torch.randn(n, max_nodes, d), "nodes_mask": nodes_mask,
    }


@pytest.mark.parametrize("name", NEURAL_MODELS)
@pytest.mark.parametrize("schedule", ["staged", "joint"])
def test_the_registry_builds_every_model_and_each_gives_one_finite_logit_per_stay(name, schedule):
    model = build_model(name, 61, 32, 0.1, text_dim=16, heads=4, schedule=schedule).eval()
    for n in (3, 1):
        out = model(**batch(n))
        assert out.shape == (n,) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown model 'emerge_typo'"):
        build_model("emerge_typo", 61, 32, 0.1)


STAGED = [name for name in VARIANTS if f"{name}_joint" in JOINT_MODELS]


@pytest.mark.parametrize("name", STAGED)
def test_a_staged_fusion_model_starts_as_the_gru_baseline_and_a_joint_one_trains_at_once(name):
    """Staged: the GRU baseline with the same initial weights (same seed), and a fusion logit that starts at zero;
    the ``_joint`` name is the paper's model, one stage."""
    torch.manual_seed(5)
    gru = build_model("gru", 61, 32, 0.1).eval()
    torch.manual_seed(5)
    staged = build_model(name, 61, 32, 0.1, text_dim=16, heads=4, schedule="staged").eval()
    after_staged = torch.rand(1)
    torch.manual_seed(5)
    build_model("gru", 61, 32, 0.1)
    assert torch.equal(after_staged, torch.rand(1))  # the fusion network draws nothing the GRU's training would
    for key, weight in gru.state_dict().items():
        assert torch.equal(staged.state_dict()[f"series_model.{key}"], weight)
    inputs = batch()
    torch.testing.assert_close(staged(**inputs), gru(inputs["series"]), rtol=0, atol=0)
    assert [stage.name for stage in staged.training_stages()] == ["series", "text"]
    text_stage = staged.training_stages()[1]
    assert text_stage.selection == "loss" and not set(text_stage.module.parameters()) & set(gru.parameters())
    assert len(list(text_stage.module.parameters())) + len(list(staged.series_model.parameters())) == len(
        list(staged.parameters()))
    joint = build_model(f"{name}_joint", 61, 32, 0.1, text_dim=16, heads=4, schedule="staged")
    assert [stage.name for stage in joint.training_stages()] == ["all"] and not hasattr(joint, "series_model")


def fusion_model(name: str, schedule: str) -> torch.nn.Module:
    """A fusion model whose text moves its logit: a staged one's zero-initialised last layer drawn at random."""
    model = build_model(name, 61, 32, 0.0, text_dim=16, heads=4, schedule=schedule).eval()
    if getattr(model, "staged", False):
        torch.nn.init.normal_(model.head.net[-1].weight)
    return model


SCHEDULES = pytest.mark.parametrize("schedule", ["staged", "joint"])


@SCHEDULES
def test_masked_text_slots_do_not_change_the_prediction(schedule):
    model = fusion_model("emerge", schedule)
    inputs = batch()
    before = model(**inputs)
    inputs["notes"][1] = torch.randn_like(inputs["notes"][1]) * 100  # stay 1 has no notes: all slots masked
    inputs["notes"][0, 3] = 1e3  # an empty slot of stay 0
    inputs["summary"][2] = 1e3  # stay 2 has no summary
    after = model(**inputs)
    torch.testing.assert_close(before, after)
    knowledge = fusion_model("emerge_knowledge", schedule)
    before = knowledge(**inputs)
    inputs["knowledge"][1] = 1e3  # stay 1 has no knowledge text
    inputs["summary"] = inputs["summary"] * 100  # a model reading the knowledge text ignores the summary
    torch.testing.assert_close(before, knowledge(**inputs))


@SCHEDULES
@pytest.mark.parametrize("name", ["ts_nodes", "emerge_nodes"])
def test_node_models_read_one_token_per_node_and_ignore_masked_slots(name, schedule):
    model = fusion_model(name, schedule)
    assert model.text_type.num_embeddings == 4 and model.node_projection is not None
    assert build_model("emerge", 61, 32, 0.0, text_dim=16, heads=4).text_type.num_embeddings == 3
    inputs = batch()
    text, mask = model.text_tokens(*(inputs[k] for k in ("notes", "notes_mask", "summary", "summary_mask",
                                                         "knowledge", "knowledge_mask", "nodes", "nodes_mask")))
    notes = 4 if name == "emerge_nodes" else 0
    assert text.shape == (3, notes + 5, 32) and mask[:, notes:].tolist() == inputs["nodes_mask"].tolist()
    before = model(**inputs)
    assert before.shape == (3,) and torch.isfinite(before).all()
    inputs["nodes"][1] = torch.randn_like(inputs["nodes"][1]) * 100  # stay 1 has no nodes: all slots masked
    inputs["nodes"][0, 3:] = 1e3  # the empty slots of stays 0 and 2
    inputs["nodes"][2, 1:] = -1e3
    inputs["knowledge"], inputs["summary"] = inputs["knowledge"] * 100, inputs["summary"] * 100  # not read
    torch.testing.assert_close(before, model(**inputs))
    inputs["nodes"][0, 0] = inputs["nodes"][0, 0] + 1.0  # a node that is there changes the prediction
    after = model(**inputs)
    assert not torch.allclose(before[0], after[0]) and torch.allclose(before[1:], after[1:])


LATE = [name for name, flags in VARIANTS.items() if flags["fusion"] == "late"]
KINDS = {"use_notes": "notes", "use_summary": "summary", "use_knowledge": "knowledge", "use_nodes": "nodes"}


@pytest.mark.parametrize("name", LATE)
def test_late_fusion_is_the_series_logit_plus_a_linear_score_of_each_text_token(name):
    """The text only shifts the GRU's logit, by the sum of one linear score per token of the kinds it reads;
    masked slots and unread kinds count nothing, and a stay without text keeps the GRU's logit."""
    model = build_model(name, 61, 32, 0.0, text_dim=16, heads=4).eval()
    kinds = [kind for flag, kind in KINDS.items() if VARIANTS[name].get(flag)]
    assert sorted(model.text) == sorted(kinds)
    inputs = batch()
    with torch.no_grad():
        for score in model.text.values():
            torch.nn.init.normal_(score.weight)
        expected = model.series(inputs["series"])
        for kind in kinds:
            scores = model.text[kind](inputs[kind]).squeeze(-1) * inputs[f"{kind}_mask"]
            expected = expected + (scores.sum(dim=1) if scores.dim() == 2 else scores)
        torch.testing.assert_close(model(**inputs), expected)
        unread = [kind for kind in KINDS.values() if kind not in kinds]
        masked = {kind: inputs[kind].masked_fill(~inputs[f"{kind}_mask"].unsqueeze(-1), 1e3) for kind in kinds}
        torch.testing.assert_close(model(**(inputs | masked | {kind: inputs[kind] * 100 for kind in unread})), expected)
        without_text = inputs | {f"{kind}_mask": torch.zeros_like(inputs[f"{kind}_mask"]) for kind in kinds}
        torch.testing.assert_close(model(**without_text), model.series(inputs["series"]))


@pytest.mark.parametrize("name, series_prefix, text_weight", [
    ("emerge_knowledge_late", "series.", "text.knowledge.weight"),
    ("emerge_knowledge", "series_model.", "head.net.3.weight"),  # staged cross-attention: its last layer
    ("emerge_concat", "series_model.", "head.net.3.weight"),
])
def test_staged_training_fits_the_gru_baseline_first_then_only_the_text_against_it(tmp_path, name, series_prefix,
                                                                                   text_weight):
    """Stage one gives exactly the weights of the gru baseline (same seed); stage two leaves them as they are and
    learns the text, where the label is planted, so that the staged model beats the GRU on validation."""
    rng = np.random.default_rng(0)
    n, d = 300, 16
    y = rng.integers(0, 2, n).astype(float)
    series = rng.normal(size=(n, 48, 61)).astype(np.float32)
    series[:, :, 0] += 0.3 * y[:, None]  # a weak signal in the series, a strong one in the knowledge text
    knowledge = rng.normal(size=(n, d)).astype(np.float32)
    knowledge[:, 0] += 2.0 * y
    inputs = {"series": series, "notes": rng.normal(size=(n, 2, d)).astype(np.float32),
              "notes_mask": np.ones((n, 2), bool), "knowledge": knowledge, "knowledge_mask": np.ones(n, bool),
              "summary": rng.normal(size=(n, d)).astype(np.float32), "summary_mask": np.ones(n, bool)}
    if name == "emerge_concat":  # reads the summary: plant the label there
        inputs["summary"], inputs["knowledge"] = inputs["knowledge"], inputs["summary"]
    splits = np.array(["train"] * 200 + ["val"] * 50 + ["test"] * 50)
    common = dict(hidden_size=16, max_epochs=12, patience=4, batch_size=32, device="cpu")
    gru = train(inputs, y, splits, np.arange(n), train_settings(model="gru", **common), tmp_path / "gru")
    staged = train(inputs, y, splits, np.arange(n), train_settings(model=name, **common), tmp_path / "staged")
    gru_weights = torch.load(tmp_path / "gru/model.pt")["state_dict"]
    staged_weights = torch.load(tmp_path / "staged/model.pt")["state_dict"]
    for key, weight in gru_weights.items():
        torch.testing.assert_close(staged_weights[f"{series_prefix}{key}"], weight, rtol=0, atol=0)
    assert staged["stages"]["series"]["best_epoch"] == gru["best_epoch"]
    # the text stage chose its epoch by validation log loss (a negative score), not by AUPRC (a positive one)
    assert staged["stages"]["text"]["selection"] == "loss" and staged["stages"]["text"]["best_val_score"] < 0
    assert staged_weights[text_weight].abs().sum() > 0
    assert staged["val_auprc"] > gru["val_auprc"] + 0.1
    history = pl.read_csv(tmp_path / "staged/history.csv")
    assert history.get_column("stage").unique(maintain_order=True).to_list() == ["series", "text"]
    predictions = pl.read_parquet(tmp_path / "gru/predictions.parquet")
    assert predictions.height == 100  # validation and test


@SCHEDULES
def test_a_stay_without_nodes_is_predicted_as_one_without_node_slots(schedule):
    """ts_nodes on a stay with no node tokens: whatever fills its masked slots, the same as a stay whose node
    slots are all empty zeros (its text side is zero, the series alone decides)."""
    model = fusion_model("ts_nodes", schedule)
    inputs = batch(1, node_counts=(0,))
    zeros = model(**(inputs | {"nodes": torch.zeros_like(inputs["nodes"])}))
    torch.testing.assert_close(zeros, model(**(inputs | {"nodes": torch.randn_like(inputs["nodes"]) * 1e3})))


@SCHEDULES
def test_a_stay_without_any_text_is_predicted_from_its_series(schedule):
    model = fusion_model("emerge", schedule)
    inputs = batch(1, with_notes=(False,))
    inputs["summary_mask"][:] = False
    first = model(**inputs)
    inputs["series"] = inputs["series"] + 1.0
    assert torch.isfinite(first).all() and not torch.allclose(first, model(**inputs))


def test_cross_attention_attends_over_several_tokens():
    block = CrossAttention(8, 2, 0.0).eval()
    queries, keys = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    _, weights = block.attention(queries, keys, keys, need_weights=True)
    assert weights.shape == (1, 5, 3) and not torch.allclose(weights, torch.ones_like(weights))
    full = block(queries, keys, torch.ones(1, 3, dtype=torch.bool))
    some = block(queries, keys, torch.tensor([[True, False, False]]))
    assert not torch.allclose(full, some)  # masking keys changes the result: the softmax is not trivially 1


def test_masked_mean_ignores_padding_and_handles_empty_rows():
    tokens = torch.tensor([[[1.0], [3.0]], [[5.0], [7.0]]])
    mask = torch.tensor([[True, False], [False, False]])
    assert masked_mean(tokens, mask).tolist() == [[1.0], [0.0]]


def test_emerge_training_is_deterministic_and_uses_the_text(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 240, 16
    series = rng.normal(size=(n, 48, 61)).astype(np.float32)
    y = rng.integers(0, 2, n).astype(float)
    summary = rng.normal(size=(n, d)).astype(np.float32)
    summary[:, 0] += 3.0 * y  # the label is planted in the text only
    inputs = {"series": series, "notes": np.zeros((n, 2, d), np.float32), "notes_mask": np.zeros((n, 2), bool),
              "summary": summary, "summary_mask": np.ones(n, bool)}
    splits = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    for schedule in ("staged", "joint"):
        settings = train_settings(model="emerge", hidden_size=16, max_epochs=8, patience=4, batch_size=32,
                                 device="cpu", schedule=schedule)
        a = train(inputs, y, splits, np.arange(n), settings, tmp_path / schedule / "a")
        b = train(inputs, y, splits, np.arange(n), settings, tmp_path / schedule / "b")
        assert (a["best_val_score"], a["val_auprc"]) == (b["best_val_score"], b["val_auprc"]), schedule
        assert a["val_auprc"] > 0.8, schedule


@pytest.mark.parametrize("name", ["ts_nodes", "emerge_nodes", "ts_nodes_late"])
def test_node_models_train_and_read_the_node_tokens(tmp_path, name):
    rng = np.random.default_rng(0)
    n, d, slots = 240, 16, 4
    y = rng.integers(0, 2, n).astype(float)
    nodes_mask = np.arange(slots) < rng.integers(1, slots + 1, n)[:, None]  # 1 to 4 nodes, in the first slots
    nodes = rng.normal(size=(n, slots, d)).astype(np.float32) * nodes_mask[..., None]
    nodes[:, 0, 0] += 3.0 * y  # the label is planted in the first (highest-ranked) node only
    inputs = {"series": rng.normal(size=(n, 48, 61)).astype(np.float32), "notes": np.zeros((n, 2, d), np.float32),
              "notes_mask": np.zeros((n, 2), bool), "summary": rng.normal(size=(n, d)).astype(np.float32),
              "summary_mask": np.ones(n, bool), "knowledge": rng.normal(size=(n, d)).astype(np.float32),
              "knowledge_mask": np.ones(n, bool), "nodes": nodes, "nodes_mask": nodes_mask}
    splits = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    settings = train_settings(model=name, hidden_size=16, max_epochs=16, patience=8, batch_size=32, device="cpu")
    a = train(inputs, y, splits, np.arange(n), settings, tmp_path / "a")
    assert a["val_auprc"] > 0.8
    assert train(inputs, y, splits, np.arange(n), settings, tmp_path / "b")["val_auprc"] == a["val_auprc"]


@pytest.mark.parametrize("name", ["knowledge_only", "ts_knowledge", "emerge_knowledge"])
def test_knowledge_models_train_and_read_the_knowledge_text_not_the_summary(tmp_path, name):
    rng = np.random.default_rng(0)
    n, d = 240, 16
    y = rng.integers(0, 2, n).astype(float)
    knowledge = rng.normal(size=(n, d)).astype(np.float32)
    knowledge[:, 0] += 3.0 * y  # the label is planted in the knowledge text only
    inputs = {"series": rng.normal(size=(n, 48, 61)).astype(np.float32), "notes": np.zeros((n, 2, d), np.float32),
              "notes_mask": np.zeros((n, 2), bool), "summary": rng.normal(size=(n, d)).astype(np.float32),
              "summary_mask": np.ones(n, bool), "knowledge": knowledge, "knowledge_mask": np.ones(n, bool)}
    splits = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    # 16 epochs: the late-fusion model learns one linear score per token, slower than the attention models
    settings = train_settings(model=name, hidden_size=16, max_epochs=16, patience=8, batch_size=32, device="cpu")
    a = train(inputs, y, splits, np.arange(n), settings, tmp_path / "a")
    assert a["val_auprc"] > 0.8
    assert train(inputs, y, splits, np.arange(n), settings, tmp_path / "b")["val_auprc"] == a["val_auprc"]


def test_the_config_schema_names_every_model():
    """A model added to VARIANTS must be selectable in the config (schema.yaml's model_name)."""
    import yaml

    from emerge_ehr.model.classic import CLASSIC_MODELS

    schema = yaml.safe_load((Path(__file__).parents[1] / "config" / "schema.yaml").read_text())
    names = set(schema["$defs"]["model_name"]["enum"])
    assert names == {*NEURAL_MODELS, *CLASSIC_MODELS, "oracle"}
