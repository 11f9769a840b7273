"""Which text kinds a fusion model reads at prediction, and the hiding of kinds while it trains.

A model keeps, in its weights (a buffer, so every checkpoint carries it), which of its text kinds it reads:
- a kind that no training stay had is never read, for any stay: its projection was never trained, so a
  validation or test stay that has it must not feed it (its mask is cleared);
- the text stage of a model trained in stages chooses on validation which kinds to keep, none included (then
  the model is exactly its GRU); see ``train.py``.

While the text stage of a staged network trains, each of a training stay's kinds is hidden with probability
``dropout``, so that the network also learns to predict from every subset of its inputs and a subset chosen on
validation is one it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import torch
from torch import nn

TEXT_KINDS = ("notes", "summary", "knowledge", "nodes")


def subset_name(kinds: Iterable[str]) -> str:
    """A subset of text kinds as the tables write it.

    >>> subset_name(["notes", "knowledge"]), subset_name([])
    ('notes+knowledge', 'none')
    """
    kinds = list(kinds)
    return "+".join(kinds) if kinds else "none"


def subsets(kinds: Iterable[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``kinds``, fewest kinds first, each in the given order.

    >>> subsets(["notes", "knowledge"])
    [('notes',), ('knowledge',), ('notes', 'knowledge')]
    """
    kinds = tuple(kinds)
    return [subset for size in range(1, len(kinds) + 1) for subset in combinations(kinds, size)]


class TextSelection(nn.Module):
    """The kinds a model reads (``kinds``), which of them it keeps, and kind dropout while training."""

    def __init__(self, kinds: Iterable[str], dropout: float = 0.0) -> None:
        super().__init__()
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(TEXT_KINDS)
        if unknown:
            raise ValueError(f"unknown text kinds {sorted(unknown)}: expected some of {TEXT_KINDS}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"train.text_dropout must be in [0, 1), not {dropout}")
        self.dropout = dropout
        self.register_buffer("kept", torch.ones(len(self.kinds), dtype=torch.bool))

    def keep(self, kinds: Iterable[str]) -> None:
        """Read ``kinds`` only (a subset of the model's kinds); the others are masked for every stay."""
        kinds = set(kinds)
        if kinds - set(self.kinds):
            raise ValueError(f"{sorted(kinds - set(self.kinds))} are not among this model's kinds {self.kinds}")
        self.kept.copy_(torch.tensor([kind in kinds for kind in self.kinds], dtype=torch.bool))

    def kept_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, kept in zip(self.kinds, self.kept.tolist()) if kept)

    def forward(self, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The masks of the model's kinds with the kinds it does not keep cleared, and, while training, each
        kind of each stay hidden with probability ``dropout``."""
        out = {}
        for kind, kept in zip(self.kinds, self.kept):
            mask = masks[kind] & kept
            if self.training and self.dropout > 0:
                shown = torch.rand(mask.shape[0], device=mask.device) >= self.dropout
                mask = mask & shown.view(-1, *([1] * (mask.dim() - 1)))
            out[kind] = mask
        return out
