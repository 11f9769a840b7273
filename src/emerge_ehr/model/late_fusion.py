"""Late fusion trained in stages: the GRU first, then a linear text score against the frozen GRU.

    logit = GRU(series) + sum over the stay's text tokens of w_kind . token

The text tokens are the same as EMERGE's (note chunks, LLM summary, knowledge text, node definition lines; masked
slots count zero), each kind with its own linear score and no bias, so a stay without text keeps the GRU's logit.

Why stages: trained jointly, a fusion network stops early when the time series has converged, a few epochs
before the text side has learned anything; on the evidence run the jointly trained models gained nothing over
the GRU, while the same inputs as a residual on the GRU's logit gained +5 to +13 AUPRC (docs/PERFORMANCE.md).
So stage one trains the series model alone, exactly as the ``gru`` baseline trains (same seed, same
initialisation, same batches: the same weights), and stage two freezes it and fits the text score, a logistic
regression on the text embeddings with the GRU's logit as offset, early-stopped on the validation log loss
(smooth, where the AUPRC of a few dozen validation deaths stalls). The model's gain over ``gru`` is then the
text's alone.
"""

from __future__ import annotations

import torch
from torch import nn

from emerge_ehr.model.sequence import SequenceClassifier
from emerge_ehr.model.staging import Stage, series_then_text
from emerge_ehr.model.text_selection import TEXT_KINDS, TextSelection


class LateFusion(nn.Module):
    def __init__(self, n_inputs: int, text_dim: int, hidden_size: int = 128, dropout: float = 0.25,
                 use_notes: bool = False, use_summary: bool = False, use_knowledge: bool = False,
                 use_nodes: bool = False) -> None:
        super().__init__()
        kinds = [kind for kind, used in zip(TEXT_KINDS, (use_notes, use_summary, use_knowledge, use_nodes)) if used]
        if not kinds:
            raise ValueError("late fusion needs at least one text input")
        # created first, from the same random state as the gru baseline: the same initial weights
        self.series = SequenceClassifier("gru", n_inputs, hidden_size, dropout)
        with torch.random.fork_rng():  # the text scores do not draw from the state the series' training uses
            self.text = nn.ModuleDict({kind: nn.Linear(text_dim, 1, bias=False) for kind in kinds})
        for score in self.text.values():
            nn.init.zeros_(score.weight)  # stage two starts from the GRU's own predictions
        # additive: a subset of the kinds is the sum of their scores, so no kind dropout is needed to read one
        self.text_selection = TextSelection(kinds)

    def training_stages(self) -> list[Stage]:
        return series_then_text(self.series, self.text, "text_learning_rate")

    def text_score(self, notes=None, notes_mask=None, summary=None, summary_mask=None, knowledge=None,
                   knowledge_mask=None, nodes=None, nodes_mask=None) -> torch.Tensor:
        """The sum of each text token's score, per stay; masked slots count zero."""
        vectors_of = {"notes": notes, "summary": summary, "knowledge": knowledge, "nodes": nodes}
        given = {"notes": notes_mask, "summary": summary_mask, "knowledge": knowledge_mask, "nodes": nodes_mask}
        masks = self.text_selection({kind: given[kind] for kind in self.text})
        total = 0.0
        for kind, score in self.text.items():
            vectors, mask = vectors_of[kind], masks[kind]
            scores = score(vectors).squeeze(-1) * mask.to(vectors.dtype)
            total = total + (scores.sum(dim=1) if scores.dim() == 2 else scores)
        return total

    def forward(self, series, **text) -> torch.Tensor:
        return self.series(series) + self.text_score(**text)
