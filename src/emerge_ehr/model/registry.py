"""Any neural model of the comparison, built by name: the one place that maps names to classes."""

from __future__ import annotations

from torch import nn

from emerge_ehr.model.emerge import EMERGE
from emerge_ehr.model.late_fusion import LateFusion
from emerge_ehr.model.sequence import SequenceClassifier
from emerge_ehr.model.variants import NEURAL_MODELS, SEQUENCE_MODELS, variant


def build_model(name: str, n_inputs: int, hidden_size: int, dropout: float, text_dim: int = 0, heads: int = 4,
                schedule: str = "staged", text_dropout: float = 0.0) -> nn.Module:
    """Time-series baselines, EMERGE and its ablations (trained as ``schedule`` says, or jointly for the
    ``*_joint`` names), and the late-fusion models. ``text_dropout`` acts only while a staged network's text
    stage trains: a model built to predict (explanations, external validation) needs none."""
    if name in SEQUENCE_MODELS:
        return SequenceClassifier(name, n_inputs, hidden_size, dropout, heads=heads)
    flags = variant(name, schedule)
    if flags is None:
        raise ValueError(f"unknown model '{name}': expected one of {', '.join(NEURAL_MODELS)}")
    if flags["fusion"] == "late":
        return LateFusion(n_inputs, text_dim, hidden_size, dropout,
                          **{k: v for k, v in flags.items() if k not in ("use_series", "fusion")})
    return EMERGE(n_inputs, text_dim, hidden_size, heads, dropout, **flags, text_dropout=text_dropout)
