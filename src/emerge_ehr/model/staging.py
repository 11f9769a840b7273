"""Training in stages: what a stage fits and how its best epoch is chosen (read by ``train.py``).

A fusion model trained in stages fits the GRU first, exactly as the ``gru`` baseline trains, then freezes it and
fits the text side against it. Trained jointly, a fusion network stops early once the time series has converged,
a few epochs before the text side has learned anything (docs/PERFORMANCE.md, the evidence run).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SCHEDULES = ("staged", "joint")


@dataclass(frozen=True)
class Stage:
    """One stage of training: the module it fits (the rest frozen), how its best epoch is chosen, and the
    TrainSettings field that gives its learning rate."""

    name: str
    module: nn.Module
    selection: str  # "auprc" or "loss"
    rate: str = "learning_rate"
    chooses_text: bool = False  # scores its start as epoch 0 and chooses the text kinds to keep (train.py)


def series_then_text(series: nn.Module, text: nn.Module, text_rate: str) -> list[Stage]:
    """The two stages: the series model by validation AUPRC, as the baseline; then the text side by validation log
    loss, which is smooth where the AUPRC of a few dozen validation deaths is a step function. The text stage
    starts from the GRU's own predictions, scores them as epoch 0, and keeps text only where it beats them."""
    return [Stage("series", series, "auprc"), Stage("text", text, "loss", text_rate, chooses_text=True)]
