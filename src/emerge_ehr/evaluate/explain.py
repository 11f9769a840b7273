"""Why a model gave a stay its risk: each input's share of the stay's logit, for the report's case studies.

- Late fusion (``*_late``): exact. Its logit is the GRU's plus one linear score per text token, so the logit
  splits into the series part and one term per note chunk, summary, knowledge text and node, which sum to it to
  float precision.
- Every other neural model: integrated gradients (captum) from a baseline input to the stay, per input tensor.
  The baseline is all zeros: every numeric variable at its training mean, no category charted, and zero vectors
  in the stay's own text slots (its masks kept). By completeness the attributions sum to logit(stay) -
  logit(baseline); ``delta`` is what the path integral's approximation leaves over.
- The series part is split among variables by integrated gradients in both cases (over the whole model, or the
  late-fusion model's GRU), summed over the 48 hours and over a categorical variable's one-hot columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from emerge_ehr.model.late_fusion import LateFusion
from emerge_ehr.model.registry import build_model
from emerge_ehr.model.text_selection import TEXT_KINDS
SLOTTED = ("notes", "nodes")  # kinds with one token per slot; summary and knowledge are one token each
TOP_VARIABLES = 5


def load_model(path: str) -> nn.Module:
    """A trained model from its model.pt (the train stage's checkpoint), in eval mode on the CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "skipped" in checkpoint:
        raise ValueError(f"{path}: the model was not trained ({checkpoint['skipped']})")
    settings = checkpoint["settings"]
    model = build_model(settings["model"], checkpoint["n_inputs"], settings["hidden_size"], settings["dropout"],
                        checkpoint["text_dim"], settings["heads"], settings["schedule"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def reads(model: nn.Module) -> tuple[str, ...]:
    """The text kinds a model reads at prediction: those it kept (none for the time-series baselines)."""
    selection = getattr(model, "text_selection", None)
    return selection.kept_kinds() if selection is not None else ()


def variable_names(feature_names: list[str]) -> list[str]:
    """The variable of each feature column: a one-hot column ``gcs_eye=To Pain`` belongs to ``gcs_eye``.

    >>> variable_names(["gcs_eye=To Pain", "heart_rate", "sex_male"])
    ['gcs_eye', 'heart_rate', 'sex_male']
    """
    return [name.split("=", 1)[0] for name in feature_names]


def _integrated_gradients(forward, inputs: tuple[torch.Tensor, ...], extra: tuple, steps: int):
    from captum.attr import IntegratedGradients

    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN has no backward in eval mode
        # 8 of the steps at a time: all of them at once held 3.2 GB for 256 stays of a cross-attention model
        attributions, delta = IntegratedGradients(forward).attribute(
            inputs, baselines=tuple(torch.zeros_like(x) for x in inputs), additional_forward_args=extra,
            n_steps=steps, return_convergence_delta=True, internal_batch_size=len(inputs[0]) * 8)
    return attributions, delta


def attribute(model: nn.Module, batch: dict[str, torch.Tensor], steps: int = 32) -> dict[str, np.ndarray]:
    """Per stay of the batch: logit, each input's contribution (per slot for notes and nodes), the series' per
    feature column (summed over hours), and the method's residual.

    Keys: ``logit``, ``baseline_logit`` (NaN for the exact decomposition), ``delta``, ``series`` (B),
    ``series_features`` (B x features), and for each kind the model reads its total (B) and, for notes and
    nodes, ``{kind}_slots`` (B x slots; masked slots zero).
    """
    kinds = reads(model)
    masks = tuple(batch[f"{kind}_mask"] for kind in kinds)
    with torch.no_grad():
        logit = model(**batch).float()
    if isinstance(model, LateFusion):
        with torch.no_grad():
            series_logit = model.series(batch["series"]).float()
            slots = {}
            for kind in kinds:
                scores = model.text[kind](batch[kind]).squeeze(-1) * batch[f"{kind}_mask"].to(batch[kind].dtype)
                slots[kind] = scores if scores.dim() == 2 else scores.unsqueeze(1)
        (features,), _ = _integrated_gradients(model.series, (batch["series"],), (), steps)
        result = {"series": series_logit, "baseline_logit": torch.full_like(logit, float("nan"))}
    else:
        series = batch["series"]
        with_series = getattr(model, "use_series", True)  # note_only and the like do not read it
        # the kinds a model has but did not keep: passed as they are (masked inside the model), not attributed
        unread = [name for kind in getattr(getattr(model, "text_selection", None), "kinds", ()) if kind not in kinds
                  for name in (kind, f"{kind}_mask")]

        def forward(*tensors):
            given = (series, *tensors) if not with_series else tensors
            tokens = dict(zip(kinds, given[1: 1 + len(kinds)]))
            rest = given[1 + len(kinds):]
            token_masks = {f"{kind}_mask": mask for kind, mask in zip(kinds, rest)}
            return model(given[0], **tokens, **token_masks, **dict(zip(unread, rest[len(kinds):])))

        inputs = ((series,) if with_series else ()) + tuple(batch[kind] for kind in kinds)
        extra = masks + tuple(batch[name] for name in unread)  # captum repeats them for its internal batches
        attributions, _ = _integrated_gradients(forward, inputs, extra, steps)
        features = attributions[0] if with_series else torch.zeros_like(series)
        slots = {kind: a.sum(dim=-1) if a.dim() == 3 else a.sum(dim=-1, keepdim=True)
                 for kind, a in zip(kinds, attributions[int(with_series):])}
        with torch.no_grad():
            zeros = {name: torch.zeros_like(x) if x.is_floating_point() else x for name, x in batch.items()}
            baseline = model(**zeros).float()
        result = {"series": features.sum(dim=(1, 2)), "baseline_logit": baseline}
    result |= {"logit": logit, "series_features": features.sum(dim=1)}
    for kind, values in slots.items():
        result[kind] = values.sum(dim=1)
        if kind in SLOTTED:
            result[f"{kind}_slots"] = values
    explained = result["series"] + sum((result[kind] for kind in kinds), torch.zeros_like(logit))
    reference = logit if isinstance(model, LateFusion) else logit - result["baseline_logit"]
    result["delta"] = reference - explained
    return {name: value.detach().float().numpy() for name, value in result.items()}


def explain_rows(model: nn.Module, inputs: dict[str, np.ndarray], rows: np.ndarray, feature_names: list[str],
                 batch_size: int = 256, steps: int = 32) -> pl.DataFrame:
    """One row per stay of ``rows`` (indices into ``inputs``): the contributions of ``attribute`` and the
    variables that moved the series part most (by absolute attribution)."""
    variables = variable_names(feature_names)
    names = list(dict.fromkeys(variables))
    columns = np.array([names.index(v) for v in variables])
    parts = []
    for start in range(0, len(rows), batch_size):
        batch = {name: torch.from_numpy(np.ascontiguousarray(array[rows[start: start + batch_size]]))
                 for name, array in inputs.items()}
        parts.append(attribute(model, batch, steps))
    found = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]} if parts else {}
    per_variable = np.zeros((len(rows), len(names)))
    if parts:
        np.add.at(per_variable.T, columns, found["series_features"].T)
    shown = TOP_VARIABLES if getattr(model, "use_series", True) else 0  # note_only and the like: no series
    order = np.argsort(-np.abs(per_variable), axis=1)[:, :shown]
    method = "exact" if isinstance(model, LateFusion) else "integrated_gradients"
    frame = {
        "method": [method] * len(rows),
        "logit": found.get("logit", np.zeros(0)), "baseline_logit": found.get("baseline_logit", np.zeros(0)),
        "delta": found.get("delta", np.zeros(0)),
        "series": found.get("series", np.zeros(0)) if shown else np.full(len(rows), np.nan),
        "top_variables": [[names[j] for j in row] for row in order],
        "top_variable_scores": [per_variable[i, row].tolist() for i, row in enumerate(order)],
    }
    for kind in TEXT_KINDS:
        frame[kind] = found.get(kind, np.full(len(rows), np.nan))
    for kind in SLOTTED:
        slots = found.get(f"{kind}_slots")
        frame[f"{kind}_slots"] = [row.tolist() for row in slots] if slots is not None else [[] for _ in rows]
    return pl.DataFrame(frame, schema=EXPLANATION_SCHEMA).fill_nan(None)  # null: a kind the model does not read


EXPLANATION_SCHEMA = {
    "method": pl.String, "logit": pl.Float64, "baseline_logit": pl.Float64, "delta": pl.Float64,
    "series": pl.Float64, "top_variables": pl.List(pl.String), "top_variable_scores": pl.List(pl.Float64),
    **{kind: pl.Float64 for kind in TEXT_KINDS}, **{f"{kind}_slots": pl.List(pl.Float64) for kind in SLOTTED},
}
