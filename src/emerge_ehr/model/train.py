"""Training with AdamW and early stopping on validation AUPRC; deterministic given a seed.

A model with several ``training_stages()`` (late fusion, staged EMERGE) is trained stage by stage: each stage fits
its own module with the others frozen (in eval mode), with its own early stopping, and keeps its best epoch before
the next begins.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from emerge_ehr.evaluate.metrics import auprc, auroc
from emerge_ehr.model.registry import build_model
from emerge_ehr.model.staging import Stage

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = {"stay_id": pl.Int64, "split": pl.String, "label": pl.Int8, "probability": pl.Float64}
HISTORY_SCHEMA = {"stage": pl.String, "epoch": pl.Int64, "train_loss": pl.Float64, "val_auprc": pl.Float64,
                  "val_auroc": pl.Float64, "seconds": pl.Float64, "stays_per_second": pl.Float64}


@dataclass(frozen=True)
class TrainSettings:
    model: str = "gru"
    hidden_size: int = 128
    dropout: float = 0.25
    learning_rate: float = 1e-3
    text_learning_rate: float = 1e-2  # the text stage of late fusion: a linear score, which 1e-3 leaves unconverged
    schedule: str = "staged"  # fusion networks over series and text: the GRU first, then the rest (or "joint")
    weight_decay: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    heads: int = 4


def resolve_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA where there is none is an error, not a silent fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device is '{requested}' but no CUDA device is available")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
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


def _minus_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    eps = 1e-7
    return float(np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))


def _selection_score(y: np.ndarray, p: np.ndarray, selection: str = "auprc") -> float:
    """Validation AUPRC (minus the log loss when the validation split has a single class), or minus the log loss."""
    score = auprc(y, p) if selection == "auprc" else float("nan")
    return _minus_log_loss(y, p) if np.isnan(score) else score


def _stages(model: nn.Module) -> list[Stage]:
    """The model's training stages; one stage fitting everything for the models that define none."""
    return model.training_stages() if hasattr(model, "training_stages") else [Stage("all", model, "auprc")]


def _fit_stage(model: nn.Module, stage, x: dict[str, torch.Tensor], y: torch.Tensor, labels: np.ndarray,
               parts: dict[str, np.ndarray], settings: TrainSettings, device: torch.device,
               generator: torch.Generator, history: list[dict]) -> tuple[int, float]:
    """Train ``stage.module`` (the rest of ``model`` frozen) until its validation score stops improving; keep its
    best epoch's weights. Returns the best epoch and score."""
    fitted = set(stage.module.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(parameter in fitted)
    optimiser = torch.optim.AdamW(stage.module.parameters(), lr=getattr(settings, stage.rate),
                                  weight_decay=settings.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    train_idx = torch.from_numpy(parts["train"])
    y_val = labels[parts["val"]]
    best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
    for epoch in range(1, settings.max_epochs + 1):
        started = time.perf_counter()
        model.eval()
        stage.module.train()  # dropout only where weights are fitted: a frozen stage predicts as it will at test
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            yb = y[batch].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_fn(model(**_batch(x, batch, device)).float(), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        p_val = _predict(model, x, parts["val"], settings.batch_size, device)
        score = _selection_score(y_val, p_val, stage.selection)
        seconds = time.perf_counter() - started
        history.append({
            "stage": stage.name, "epoch": epoch, "train_loss": total / len(order), "val_auprc": auprc(y_val, p_val),
            "val_auroc": auroc(y_val, p_val), "seconds": seconds, "stays_per_second": len(order) / seconds,
        })
        log.info(
            "%s epoch %d/%d train_loss=%.4f val_auprc=%.4f (%.1f s)",
            stage.name, epoch, settings.max_epochs, history[-1]["train_loss"], history[-1]["val_auprc"], seconds,
        )
        if score > best_score:
            best_score, best_state, best_epoch, stale = score, copy.deepcopy(stage.module.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= settings.patience:
                log.info("%s: early stop after epoch %d (best epoch %d)", stage.name, epoch, best_epoch)
                break
    stage.module.load_state_dict(best_state)
    return best_epoch, best_score


def train(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    splits: np.ndarray,
    stay_ids: np.ndarray,
    settings: TrainSettings,
    out_dir: str | Path,
) -> dict:
    """Train one model for one task and seed; write checkpoint, history and predictions to ``out_dir``.

    ``inputs`` holds one array per model input, rows aligned with ``labels`` (``series``; for text models
    also ``notes``, ``notes_mask``, ``summary``, ``summary_mask``, ``knowledge``, ``knowledge_mask``, ``nodes``,
    ``nodes_mask``). Stays whose label is missing (NaN: not at risk) are left out. Returns a summary dict.
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
                        settings.schedule)
    model = model.to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    history, stages = [], {}
    for stage in _stages(model):
        best_epoch, best_score = _fit_stage(model, stage, x, y, labels, parts, settings, device, generator, history)
        stages[stage.name] = {"best_epoch": best_epoch, "best_val_score": best_score, "selection": stage.selection}
    best_state = model.state_dict()
    torch.save({"state_dict": best_state, "settings": asdict(settings), "n_inputs": n_inputs, "text_dim": text_dim},
               out_dir / "model.pt")
    pl.DataFrame(history, schema=HISTORY_SCHEMA).write_csv(out_dir / "history.csv")
    predicted = {name: _predict(model, x, parts[name], settings.batch_size, device) for name in ("val", "test")}
    pl.concat([pl.DataFrame({
        "stay_id": stay_ids[parts[name]].astype(np.int64),
        "split": [name] * len(parts[name]),
        "label": labels[parts[name]].astype(np.int8),
        "probability": p.astype(np.float64),
    }, schema=PREDICTION_SCHEMA) for name, p in predicted.items()]).write_parquet(out_dir / "predictions.parquet")
    summary = {
        "best_epoch": best_epoch, "epochs_run": len(history), "best_val_score": best_score,
        "val_auprc": auprc(labels[parts["val"]], predicted["val"]),
        **({"stages": stages} if len(stages) > 1 else {}),
        "device": str(device), "train_stays": len(parts["train"]),
        "stays_per_second": float(np.mean([h["stays_per_second"] for h in history])),
        "settings": asdict(settings),
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
