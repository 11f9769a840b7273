"""Training with AdamW and early stopping on validation AUPRC; deterministic given a seed.

A model with several ``training_stages()`` (late fusion, staged EMERGE) is trained stage by stage: each stage fits
its own module with the others frozen (in eval mode), with its own early stopping, and keeps its best epoch before
the next begins.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from emerge_ehr.evaluate.metrics import auprc, auroc
from emerge_ehr.model.registry import build_model
from emerge_ehr.model.staging import Stage
from emerge_ehr.model.text_choice import Candidate, choose_text, shuffled_text, stage_summary
from emerge_ehr.model.text_selection import subset_name, subsets
from emerge_ehr.model.train_settings import TrainSettings

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = {"stay_id": pl.Int64, "split": pl.String, "label": pl.Int8, "probability": pl.Float64}
# One row per epoch (epoch 0: a text stage's start) and, in a stage that chooses its text, per choice of text kinds;
# no timings (the job's log has them): a run's outputs are the same bytes every time
HISTORY_SCHEMA = {"stage": pl.String, "epoch": pl.Int64, "inputs": pl.String, "train_loss": pl.Float64,
                  "val_auprc": pl.Float64, "val_auroc": pl.Float64, "val_log_loss": pl.Float64}
# Predictions of each choice of text kinds a text stage scored, at its best epoch (text_choices.parquet)
CHOICE_SCHEMA = {"stay_id": pl.Int64, "split": pl.String, "label": pl.Int8, "inputs": pl.String,
                 "probability": pl.Float64}


def resolve_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA where there is none is an error, not a silent fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device is '{requested}' but no CUDA device is available")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    """Seeds, and the settings under which PyTorch computes the same numbers twice on one machine: on a GPU,
    cuBLAS with a fixed workspace (set before CUDA starts in this process), cuDNN without autotuning and with its
    deterministic algorithms. An operation that has no deterministic kernel warns in the job's log rather than
    failing the job (docs/PERFORMANCE.md, "Reproducibility")."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def _batch(inputs: dict[str, torch.Tensor], rows: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor[rows].to(device) for name, tensor in inputs.items()}


def _predict(model: nn.Module, inputs: dict[str, torch.Tensor], rows: np.ndarray, batch_size: int,
             device: torch.device) -> np.ndarray:
    model.eval()
    out = []
    rows = torch.from_numpy(rows)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for start in range(0, len(rows), batch_size):
            out.append(torch.sigmoid(model(**_batch(inputs, rows[start : start + batch_size], device)).float()).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def _log_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each stay's log loss."""
    eps = 1e-7
    return -(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))


def _selection_score(y: np.ndarray, p: np.ndarray, selection: str = "auprc") -> float:
    """Validation AUPRC (minus the log loss when the validation split has a single class), or minus the log loss."""
    score = auprc(y, p) if selection == "auprc" else float("nan")
    return -float(np.mean(_log_losses(y, p))) if np.isnan(score) else score


def _stages(model: nn.Module) -> list[Stage]:
    """The model's training stages; one stage fitting everything for the models that define none."""
    return model.training_stages() if hasattr(model, "training_stages") else [Stage("all", model, "auprc")]


def _history_row(stage: Stage, epoch: int, kinds, train_loss: float | None, y_val: np.ndarray,
                 p_val: np.ndarray) -> dict:
    return {"stage": stage.name, "epoch": epoch, "inputs": None if kinds is None else subset_name(kinds),
            "train_loss": train_loss, "val_auprc": auprc(y_val, p_val), "val_auroc": auroc(y_val, p_val),
            "val_log_loss": float(np.mean(_log_losses(y_val, p_val)))}


def _fit_stage(model: nn.Module, stage: Stage, x: dict[str, torch.Tensor], y: torch.Tensor, labels: np.ndarray,
               parts: dict[str, np.ndarray], settings: TrainSettings, device: torch.device,
               generator: torch.Generator, history: list[dict]) -> dict[tuple | None, Candidate]:
    """Train ``stage.module`` (the rest of ``model`` frozen) until its validation score stops improving.

    Returns the best epoch of each choice of text kinds: one choice (None) for most stages; for a stage that
    ``chooses_text``, its start scored as epoch 0 with no text (the GRU), and every non-empty subset of the kinds
    the model reads, each scored after every epoch. Early stopping ends the stage when no choice improved for
    ``patience`` epochs. The stage module is left at the start's weights.
    """
    fitted = set(stage.module.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(parameter in fitted)
    optimiser = torch.optim.AdamW(stage.module.parameters(), lr=getattr(settings, stage.rate),
                                  weight_decay=settings.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    train_idx = torch.from_numpy(parts["train"])
    y_val = labels[parts["val"]]
    selection = model.text_selection if stage.chooses_text else None
    readable = selection.kept_kinds() if selection is not None else ()
    choices = subsets(readable) if selection is not None else [None]
    start = copy.deepcopy(stage.module.state_dict())
    best: dict[tuple | None, Candidate] = {}

    def score(epoch: int, kinds, train_loss: float | None) -> bool:
        if selection is not None:
            selection.keep(kinds)
        p_val = _predict(model, x, parts["val"], settings.batch_size, device)
        value = _selection_score(y_val, p_val, stage.selection)
        history.append(_history_row(stage, epoch, kinds, train_loss, y_val, p_val))
        if kinds in best and value <= best[kinds].score:
            return False
        best[kinds] = Candidate(kinds, epoch, value, _log_losses(y_val, p_val),
                                copy.deepcopy(stage.module.state_dict()))
        return True

    if selection is not None:  # epoch 0: the start, which is the GRU
        score(0, (), None)
        if not choices:  # every kind the model reads is missing from training: nothing to fit
            return best
    stale = 0
    for epoch in range(1, settings.max_epochs + 1):
        started = time.perf_counter()
        if selection is not None:
            selection.keep(readable)
        model.eval()
        stage.module.train()  # dropout only where weights are fitted: a frozen stage predicts as it will at test
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        total = 0.0
        for begin in range(0, len(order), settings.batch_size):
            batch = order[begin : begin + settings.batch_size]
            yb = y[batch].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_fn(model(**_batch(x, batch, device)).float(), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        seconds = time.perf_counter() - started
        improved = [score(epoch, kinds, total / len(order)) for kinds in choices]
        log.info("%s epoch %d/%d train_loss=%.4f val_auprc=%.4f (%.1f s, %.0f stays/s)", stage.name, epoch,
                 settings.max_epochs, total / len(order), history[-1]["val_auprc"], seconds, len(order) / seconds)
        stale = 0 if any(improved) else stale + 1
        if stale >= settings.patience:
            log.info("%s: early stop after epoch %d", stage.name, epoch)
            break
    stage.module.load_state_dict(start)
    return best


def _adopt(model: nn.Module, stage: Stage, chosen: Candidate) -> None:
    """Give the stage module the chosen candidate's weights, and the model its text kinds."""
    stage.module.load_state_dict(chosen.state)
    if chosen.kinds is not None:
        model.text_selection.keep(chosen.kinds)


def _score_shuffled_text(model: nn.Module, stage: Stage, best: dict[tuple | None, Candidate],
                         x: dict[str, torch.Tensor], labels: np.ndarray, parts: dict[str, np.ndarray],
                         settings: TrainSettings, device: torch.device) -> None:
    """Each choice of text kinds at its best epoch, scored again with the text of other validation stays (a fixed
    derangement): what the text itself tells, beyond what the text stage learned from the series alone."""
    y_val = labels[parts["val"]]
    for candidate in best.values():
        if candidate.kinds:
            _adopt(model, stage, candidate)
            shuffled = shuffled_text(x, candidate.kinds, parts["val"], settings.seed)
            candidate.shuffled_losses = _log_losses(y_val, _predict(model, shuffled, parts["val"],
                                                                    settings.batch_size, device))


def _prediction_frame(model: nn.Module, x: dict[str, torch.Tensor], labels: np.ndarray, stay_ids: np.ndarray,
                      parts: dict[str, np.ndarray], settings: TrainSettings, device: torch.device) -> pl.DataFrame:
    """Validation and test predictions of ``model`` as it stands (PREDICTION_SCHEMA)."""
    return pl.concat([pl.DataFrame({
        "stay_id": stay_ids[parts[name]].astype(np.int64),
        "split": [name] * len(parts[name]),
        "label": labels[parts[name]].astype(np.int8),
        "probability": _predict(model, x, parts[name], settings.batch_size, device).astype(np.float64),
    }, schema=PREDICTION_SCHEMA) for name in ("val", "test")])


def _choice_predictions(model: nn.Module, stage: Stage, best: dict[tuple | None, Candidate], predict) -> pl.DataFrame:
    """Each scored choice of text kinds at its best epoch, predicted: what each input contributes, on validation
    and test (``bench/fusion_inputs.py`` pools them over folds)."""
    frames = []
    for candidate in best.values():
        _adopt(model, stage, candidate)
        frames.append(predict().with_columns(pl.lit(subset_name(candidate.kinds)).alias("inputs")))
    return pl.concat(frames).select(list(CHOICE_SCHEMA)).cast(CHOICE_SCHEMA)


def train(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    splits: np.ndarray,
    stay_ids: np.ndarray,
    settings: TrainSettings,
    out_dir: str | Path,
    unavailable_kinds: tuple[str, ...] = (),
) -> dict:
    """Train one model for one task and seed; write checkpoint, history and predictions to ``out_dir``.

    ``inputs`` holds one array per model input, rows aligned with ``labels`` (``series``; for text models
    also ``notes``, ``notes_mask``, ``summary``, ``summary_mask``, ``knowledge``, ``knowledge_mask``, ``nodes``,
    ``nodes_mask``). Stays whose label is missing (NaN: not at risk) are left out. ``unavailable_kinds``: text
    kinds no training stay has (``text_coverage.missing_kinds``), never read for any stay, since their projections
    would stay untrained. A stage that chooses its text writes ``text_choices.parquet``. Returns a summary dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(settings.seed)
    device = resolve_device(settings.device)
    known = ~np.isnan(labels)
    parts = {name: np.flatnonzero(known & (splits == name)) for name in ("train", "val", "test")}
    for name, idx in parts.items():
        if len(idx) == 0:
            raise ValueError(f"the {name} split has no labelled stays: the cohort is too small for this task")
    x = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in inputs.items()}
    y = torch.from_numpy(labels.astype(np.float32))
    n_inputs = x["series"].shape[-1]
    text_dim = x["notes"].shape[-1] if "notes" in x else x["summary"].shape[-1] if "summary" in x else 0
    model = build_model(settings.model, n_inputs, settings.hidden_size, settings.dropout, text_dim, settings.heads,
                        settings.schedule, text_dropout=settings.text_dropout)
    model = model.to(device)
    selection = getattr(model, "text_selection", None)
    masked = [kind for kind in (selection.kinds if selection is not None else ()) if kind in unavailable_kinds]
    if selection is not None:
        selection.keep(kind for kind in selection.kinds if kind not in masked)
    generator = torch.Generator().manual_seed(settings.seed)
    history, stages = [], {}

    def predict() -> pl.DataFrame:
        return _prediction_frame(model, x, labels, stay_ids, parts, settings, device)

    for stage in _stages(model):
        best = _fit_stage(model, stage, x, y, labels, parts, settings, device, generator, history)
        if stage.chooses_text:
            _score_shuffled_text(model, stage, best, x, labels, parts, settings, device)
            chosen = choose_text(list(best.values()))
            _choice_predictions(model, stage, best, predict).write_parquet(out_dir / "text_choices.parquet")
        else:
            chosen = best[None]
        _adopt(model, stage, chosen)
        stages[stage.name] = stage_summary(stage.name, stage.selection, best, chosen)
        log.info("%s: best epoch %d%s", stage.name, chosen.epoch,
                 "" if chosen.kinds is None else f", text kept: {subset_name(chosen.kinds)}")
    last = stages[list(stages)[-1]]
    torch.save({"state_dict": model.state_dict(), "settings": asdict(settings), "n_inputs": n_inputs,
                "text_dim": text_dim}, out_dir / "model.pt")
    pl.DataFrame(history, schema=HISTORY_SCHEMA).write_csv(out_dir / "history.csv")
    predictions = predict()
    predictions.write_parquet(out_dir / "predictions.parquet")
    trained = [row for row in history if row["epoch"] > 0]
    summary = {
        "best_epoch": last["best_epoch"], "epochs_run": len({(row["stage"], row["epoch"]) for row in trained}),
        "best_val_score": last["best_val_score"],
        "val_auprc": auprc(labels[parts["val"]], predictions.filter(pl.col("split") == "val")["probability"].to_numpy()),
        **({"stages": stages} if len(stages) > 1 else {}),
        **({"text_kept": list(selection.kept_kinds())} if selection is not None else {}),
        **({"text_masked": masked} if masked else {}),
        "device": str(device), "train_stays": len(parts["train"]), "settings": asdict(settings),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def skip_training(settings: TrainSettings, reason: str, train_stays: int, out_dir: str | Path) -> dict:
    """The outputs of a run that trains nothing, so that the pipeline's files exist and reruns stay clean:
    a checkpoint without weights, history and predictions with their columns and no rows, and the reason."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"skipped": reason, "settings": asdict(settings)}, out_dir / "model.pt")
    pl.DataFrame(schema=HISTORY_SCHEMA).write_csv(out_dir / "history.csv")
    pl.DataFrame(schema=PREDICTION_SCHEMA).write_parquet(out_dir / "predictions.parquet")
    summary = {"skipped": reason, "train_stays": train_stays, "settings": asdict(settings)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
