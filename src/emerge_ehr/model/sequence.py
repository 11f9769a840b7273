"""Time-series-only models: a recurrent or Transformer encoder over the hourly inputs, and the EMERGE head."""

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


class SequenceClassifier(nn.Module):
    """GRU or LSTM (last hidden state) or Transformer encoder (mean over hours) over (batch, hours, inputs).

    Text inputs, when given, are ignored: these are the time-series-only baselines.
    """

    def __init__(self, kind: str, n_inputs: int, hidden_size: int = 128, dropout: float = 0.25, hours: int = 48,
                 heads: int = 4) -> None:
        super().__init__()
        self.kind = kind
        if kind == "gru":
            self.encoder = nn.GRU(n_inputs, hidden_size, batch_first=True)
        elif kind == "lstm":
            self.encoder = nn.LSTM(n_inputs, hidden_size, batch_first=True)
        elif kind == "transformer":
            self.embed = nn.Linear(n_inputs, hidden_size)
            self.position = nn.Parameter(torch.zeros(1, hours, hidden_size))
            layer = nn.TransformerEncoderLayer(hidden_size, heads, 2 * hidden_size, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        else:
            raise ValueError(f"unknown sequence model {kind!r}")
        self.head = PredictionHead(hidden_size, dropout)

    def forward(self, series: torch.Tensor, **_text) -> torch.Tensor:
        if self.kind == "transformer":
            tokens = self.encoder(self.embed(series) + self.position[:, : series.shape[1]])
            return self.head(tokens.mean(dim=1))
        _, last = self.encoder(series)
        if self.kind == "lstm":
            last = last[0]
        return self.head(last[-1])
