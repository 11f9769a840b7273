"""Which text kinds the text stage of a staged model keeps, chosen on validation (never on test).

Every choice of kinds (each non-empty subset of those the model reads, and none: the start, which is exactly the
GRU) is scored at its best epoch by validation log loss. A choice is kept only if
1. its text carries information: the validation log loss with each stay's own text is lower than with the text
   of other validation stays (a fixed derangement) by more than two standard errors of the paired per-stay
   difference (one-sided, about 2 % by chance for each choice, 7 % for the three of a model with two kinds).
   Without this, a text stage could keep text of pure noise for what it learned from the series alone (its
   attention reads the GRU's hidden states), or for chance alone;
2. it has the fewest kinds among the choices within one standard error of the best one's log loss (Breiman's
   one-standard-error rule), so that an input that adds nothing on validation is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emerge_ehr.model.text_selection import subset_name

CHOSEN_BY = ("the fewest text kinds within one standard error of the best validation log loss, among those whose"
             " own text beats the text of other stays by more than two standard errors")


@dataclass
class Candidate:
    """The best epoch of one choice of text kinds in a stage (``kinds`` None: a stage that chooses none)."""

    kinds: tuple[str, ...] | None
    epoch: int
    score: float
    losses: np.ndarray  # each validation stay's log loss
    state: dict  # the stage module's weights at that epoch
    shuffled_losses: np.ndarray | None = None  # the same with the text of other validation stays


def paired_gain(worse: np.ndarray, better: np.ndarray) -> tuple[float, float]:
    """The mean per-stay improvement of ``better`` over ``worse`` and its standard error.

    >>> paired_gain(np.array([1.0, 1.0, 1.0]), np.array([0.5, 0.5, 0.8]))
    (0.4, 0.1)
    """
    difference = worse - better
    error = float(np.std(difference, ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return round(float(np.mean(difference)), 12), round(error, 12)


INFORMATION_ERRORS = 2.0  # standard errors by which a stay's own text must beat other stays'


def carries_information(candidate: Candidate) -> bool:
    """No kinds (the GRU) always qualifies; text qualifies when its own beats other stays' by more than two SE."""
    if not candidate.kinds:
        return True
    gain, error = paired_gain(candidate.shuffled_losses, candidate.losses)
    return gain > INFORMATION_ERRORS * error


def one_standard_error_choice(candidates: list[Candidate]) -> Candidate:
    """The candidate with the fewest text kinds whose validation log loss is within one standard error of the best
    one's (of the paired per-stay difference); among equally many kinds, the better score.

    >>> gru = Candidate((), 0, -0.30, np.array([0.3, 0.3, 0.3, 0.3]), {})
    >>> slight = Candidate(("notes",), 4, -0.29, np.array([0.2, 0.4, 0.26, 0.3]), {})
    >>> one_standard_error_choice([gru, slight]).kinds
    ()
    >>> clear = Candidate(("notes",), 4, -0.20, np.array([0.2, 0.21, 0.19, 0.2]), {})
    >>> one_standard_error_choice([gru, clear]).kinds
    ('notes',)
    """
    best = max(candidates, key=lambda c: c.score)

    def within(candidate: Candidate) -> bool:
        gain, error = paired_gain(candidate.losses, best.losses)
        return gain <= error

    return min((c for c in candidates if within(c)), key=lambda c: (len(c.kinds or ()), -c.score))


def choose_text(candidates: list[Candidate]) -> Candidate:
    """The choice the text stage keeps (module docstring).

    >>> gru = Candidate((), 0, -0.30, np.full(4, 0.3), {})
    >>> noise = Candidate(("notes",), 4, -0.20, np.full(4, 0.2), {}, shuffled_losses=np.full(4, 0.2))
    >>> choose_text([gru, noise]).kinds
    ()
    >>> noise.shuffled_losses = np.array([0.5, 0.45, 0.6, 0.5])
    >>> choose_text([gru, noise]).kinds
    ('notes',)
    """
    return one_standard_error_choice([c for c in candidates if carries_information(c)])


def derangement(n: int, seed: int) -> np.ndarray:
    """A fixed permutation of ``n`` rows that moves every row (for n > 1).

    >>> order = derangement(5, 0)
    >>> sorted(order.tolist()), bool((order != np.arange(5)).all())
    ([0, 1, 2, 3, 4], True)
    """
    if n < 2:
        return np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    fixed = np.flatnonzero(order == np.arange(n))
    for i in fixed:  # swap each fixed point with its neighbour: neither stays in place
        j = (i + 1) % n
        order[i], order[j] = order[j], order[i]
    return order


def shuffled_text(x: dict[str, torch.Tensor], kinds: tuple[str, ...], rows: np.ndarray, seed: int
                  ) -> dict[str, torch.Tensor]:
    """The inputs with the text of ``kinds`` (vectors and masks) of ``rows`` moved among those rows."""
    source = torch.from_numpy(rows[derangement(len(rows), seed)])
    target = torch.from_numpy(rows)
    out = dict(x)
    for name in [*kinds, *(f"{kind}_mask" for kind in kinds)]:
        moved = x[name].clone()
        moved[target] = x[name][source]
        out[name] = moved
    return out


def stage_summary(name: str, selection: str, best: dict[tuple | None, Candidate], chosen: Candidate) -> dict:
    """A stage in summary.json: its best epoch, and for a text stage the kinds kept and every choice's scores."""
    summary = {"best_epoch": chosen.epoch, "best_val_score": chosen.score, "selection": selection}
    if chosen.kinds is None:
        return summary
    candidates = {}
    for candidate in best.values():
        entry = {"epoch": candidate.epoch, "val_log_loss": float(np.mean(candidate.losses))}
        if candidate.kinds:
            entry |= {"val_log_loss_other_stays_text": float(np.mean(candidate.shuffled_losses)),
                      "carries_information": carries_information(candidate)}
        candidates[subset_name(candidate.kinds)] = entry
    return summary | {"kept": list(chosen.kinds), "chosen_by": CHOSEN_BY, "candidates": candidates}
