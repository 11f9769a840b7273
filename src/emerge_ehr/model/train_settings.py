"""The settings of one training run, without torch: the workflow builds them when it parses (``common.smk``)."""

from __future__ import annotations

from dataclasses import dataclass

from emerge_ehr.settings import settings as _settings


@dataclass(frozen=True)
class TrainSettings:
    model: str
    hidden_size: int
    dropout: float
    text_dropout: float  # the chance that stage two hides one text kind of a training stay (text_selection.py)
    learning_rate: float
    text_learning_rate: float  # the text stage of late fusion: a linear score, which 1e-3 leaves unconverged
    schedule: str  # fusion networks over series and text: the GRU first, then the rest (or "joint")
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    seed: int
    device: str
    heads: int

    @classmethod
    def from_config(cls, config: dict, model: str, seed: int, **values) -> "TrainSettings":
        """``train`` and ``model_settings`` (the model's own entry over ``default``) of the validated configuration;
        ``values`` override them."""
        per_model = config["model_settings"]
        section = config["train"] | per_model["default"] | per_model.get(model, {})
        return _settings(cls, section, "train", model=model, seed=seed, **values)
