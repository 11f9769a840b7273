"""Time-series-only baseline: a recurrent encoder over the hourly inputs and the EMERGE prediction head."""

from __future__ import annotations

import torch
from torch import nn


class PredictionHead(nn.Module):
    """The head of the EMERGE paper: Linear -> ReLU -> Dropout -> Linear to one logit."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, 1)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled).squeeze(-1)


class GRUClassifier(nn.Module):
    """One-layer GRU over (batch, hours, inputs); the last hidden state feeds the head; returns logits."""

    def __init__(self, n_inputs: int, hidden_size: int = 128, dropout: float = 0.25) -> None:
        super().__init__()
        self.encoder = nn.GRU(n_inputs, hidden_size, batch_first=True)
        self.head = PredictionHead(hidden_size, dropout)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        _, last = self.encoder(series)
        return self.head(last[-1])


MODELS = {"gru": GRUClassifier}


def build_model(name: str, n_inputs: int, hidden_size: int, dropout: float) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': expected one of {', '.join(MODELS)}")
    return MODELS[name](n_inputs, hidden_size=hidden_size, dropout=dropout)
