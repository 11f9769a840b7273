"""The EMERGE fusion network, in one file: time series, note, summary, knowledge and node tokens, two
cross-attention branches.

Inputs per stay
    series          (B, 48, 61)  hourly inputs
    notes           (B, K, D)    embeddings of the note chunks usable for the task (K slots, most recent last)
    notes_mask      (B, K)       True where a slot holds a chunk
    summary         (B, D)       embedding of the LLM summary of the retrieved knowledge
    summary_mask    (B,)         True where the stay has a summary
    knowledge       (B, D)       embedding of the retrieved knowledge written out without an LLM
    knowledge_mask  (B,)         True where the stay has a knowledge text
    nodes           (B, N, D)    embeddings of the retrieved knowledge-graph nodes' definition lines (N slots, in
                                 rank order: one token per node rather than one vector of the whole knowledge)
    nodes_mask      (B, N)       True where a slot holds a node

Architecture (EMERGE section 6, with real attention): a GRU keeps all 48 hidden states as time-series tokens;
note chunks, the summary, the knowledge text and the nodes are projected to the hidden size (the text tokens);
the time series attends to the text and the text attends to the time series, each branch multi-head attention
with a residual connection, layer normalisation and a feed-forward layer; each side is pooled (masked mean), the
two are concatenated and fused by an MLP; the paper's head gives one logit.

Missing modalities are masked, never zero-filled into attention: a stay without notes attends over its
summary alone, and a stay without any text gets its prediction from the time series (its text side is zero).
The released code's single token per modality would make the softmax trivially 1; several tokens per side
make the attention real.

The same class gives the ablations: choose the modalities (``use_series``, ``use_notes``, ``use_summary``,
``use_knowledge``: the knowledge text in place of, or beside, the LLM summary; ``use_nodes``: the retrieved
nodes, one token each) or replace cross-attention by concatenating the pooled tokens (``fusion="concat"``).
The named variants are in ``variants.py``; the ``*_late`` ones read the same tokens in late fusion
(``late_fusion.py``).

Training (``schedule``): ``staged`` fits the GRU first, exactly as the ``gru`` baseline trains, then freezes it
and fits the projections, both branches and the fusion, whose logit is added to the GRU's through a
zero-initialised last layer and only for stays that have text, so that stage two starts from the GRU's
predictions; the start is scored on validation as epoch 0 and kept (no text at all: exactly the GRU) unless a
text epoch beats it (``train.py``: the fewest text kinds within one standard error of the best). While stage two
trains, each text kind of a stay is hidden with probability ``text_dropout`` (``text_selection.py``), so that a
subset of the kinds chosen on validation is one the network has learned to read. ``joint`` is the paper's:
everything at once, stopped on validation AUPRC.
"""

from __future__ import annotations

import torch
from torch import nn

from emerge_ehr.model.sequence import PredictionHead, SequenceClassifier
from emerge_ehr.model.staging import SCHEDULES, Stage, series_then_text
from emerge_ehr.model.text_selection import TEXT_KINDS, TextSelection


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens; zero where a row has none."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class CrossAttention(nn.Module):
    """Queries attend to keys (multi-head), then residual + LayerNorm, feed-forward, residual + LayerNorm."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm_attention = nn.LayerNorm(hidden)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * hidden, hidden)
        )
        self.norm_output = nn.LayerNorm(hidden)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        has_keys = key_mask.any(dim=1)
        # A row without any valid key would make the softmax undefined: let it see one dummy key, then drop
        # the attention output for that row so that only the residual path remains.
        safe_mask = key_mask.clone()
        safe_mask[~has_keys, 0] = True
        attended, _ = self.attention(queries, keys, keys, key_padding_mask=~safe_mask, need_weights=False)
        attended = attended * has_keys[:, None, None].to(attended.dtype)
        x = self.norm_attention(queries + attended)
        return self.norm_output(x + self.feed_forward(x))


FUSIONS = ("cross_attention", "concat")


class EMERGE(nn.Module):
    def __init__(
        self,
        n_inputs: int,
        text_dim: int,
        hidden_size: int = 128,
        heads: int = 4,
        dropout: float = 0.25,
        use_series: bool = True,
        use_notes: bool = True,
        use_summary: bool = True,
        use_knowledge: bool = False,
        use_nodes: bool = False,
        fusion: str = "cross_attention",
        schedule: str = "joint",
        text_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
        self.use_series, self.use_notes = use_series, use_notes
        self.use_summary, self.use_knowledge, self.use_nodes = use_summary, use_knowledge, use_nodes
        self.use_text = use_notes or use_summary or use_knowledge or use_nodes
        if not (use_series or self.use_text):
            raise ValueError("the model needs at least one modality")
        self.staged = schedule == "staged"
        if self.staged and not (use_series and self.use_text):
            raise ValueError("staged training needs both the time series and a text input")
        self.cross = fusion == "cross_attention" and use_series and self.use_text
        kinds = [kind for kind, used in zip(TEXT_KINDS, (use_notes, use_summary, use_knowledge, use_nodes)) if used]
        # a child of the text stage: its kind dropout acts while stage two trains, and only then
        self.text_selection = TextSelection(kinds, text_dropout if self.staged else 0.0)
        if self.staged:
            # Stage one is the gru baseline itself: created first, from the same random state, it starts from the
            # same weights; its 48 hidden states are the series tokens. The fusion network is created without
            # drawing from that state, so that stage one's dropout draws the baseline's masks too.
            self.series_model = SequenceClassifier("gru", n_inputs, hidden_size, dropout)
            with torch.random.fork_rng():
                self._build_fusion(text_dim, hidden_size, heads, dropout)
            # the fusion's logit is added to the GRU's through a zero-initialised last layer: stage two starts
            # from the GRU's own predictions
            nn.init.zeros_(self.head.net[-1].weight)
            nn.init.zeros_(self.head.net[-1].bias)
        else:
            self.series_encoder = nn.GRU(n_inputs, hidden_size, batch_first=True) if use_series else None
            self._build_fusion(text_dim, hidden_size, heads, dropout)

    def _build_fusion(self, text_dim: int, hidden_size: int, heads: int, dropout: float) -> None:
        self.note_projection = nn.Linear(text_dim, hidden_size) if self.use_notes else None
        self.summary_projection = nn.Linear(text_dim, hidden_size) if self.use_summary else None
        self.knowledge_projection = nn.Linear(text_dim, hidden_size) if self.use_knowledge else None
        self.node_projection = nn.Linear(text_dim, hidden_size) if self.use_nodes else None
        # Text fusion: notes, summary, knowledge and nodes share one token sequence; a learned embedding tells them
        # apart. The nodes' row exists only in the models that read nodes: the others keep their initialisation.
        self.text_type = nn.Embedding(4 if self.use_nodes else 3, hidden_size)
        if self.cross:
            self.series_to_text = CrossAttention(hidden_size, heads, dropout)
            self.text_to_series = CrossAttention(hidden_size, heads, dropout)
        sides = int(self.use_series) + int(self.use_text)
        self.fusion = nn.Sequential(nn.Linear(sides * hidden_size, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.head = PredictionHead(hidden_size, dropout)

    def training_stages(self) -> list[Stage]:
        """Staged: the GRU, then everything else against it; joint: everything at once, by validation AUPRC."""
        if not self.staged:
            return [Stage("all", self, "auprc")]
        fusion = nn.ModuleList(module for name, module in self.named_children() if name != "series_model")
        return series_then_text(self.series_model, fusion, "learning_rate")

    def series_tokens(self, series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every hour's GRU state (B, 48, H), and when staged the GRU baseline's own logit."""
        if not self.staged:
            return self.series_encoder(series)[0], None
        tokens, last = self.series_model.encoder(series)
        return tokens, self.series_model.head(last[-1])

    def text_tokens(self, notes, notes_mask, summary, summary_mask, knowledge, knowledge_mask, nodes, nodes_mask):
        """The text tokens (B, T, H) and their mask (B, T), of the kinds the model keeps."""
        given = {"notes": notes_mask, "summary": summary_mask, "knowledge": knowledge_mask, "nodes": nodes_mask}
        read = self.text_selection({kind: given[kind] for kind in self.text_selection.kinds})
        notes_mask, summary_mask = read.get("notes"), read.get("summary")
        knowledge_mask, nodes_mask = read.get("knowledge"), read.get("nodes")
        tokens, masks = [], []
        if self.use_notes:
            tokens.append(self.note_projection(notes) + self.text_type.weight[0])
            masks.append(notes_mask)
        if self.use_summary:
            tokens.append(self.summary_projection(summary).unsqueeze(1) + self.text_type.weight[1])
            masks.append(summary_mask.unsqueeze(1))
        if self.use_knowledge:
            tokens.append(self.knowledge_projection(knowledge).unsqueeze(1) + self.text_type.weight[2])
            masks.append(knowledge_mask.unsqueeze(1))
        if self.use_nodes:
            tokens.append(self.node_projection(nodes) + self.text_type.weight[3])
            masks.append(nodes_mask)
        return torch.cat(tokens, dim=1), torch.cat(masks, dim=1)

    def forward(self, series, notes=None, notes_mask=None, summary=None, summary_mask=None, knowledge=None,
                knowledge_mask=None, nodes=None, nodes_mask=None) -> torch.Tensor:
        pooled, baseline = [], None
        if self.use_series:
            series_tokens, baseline = self.series_tokens(series)
            series_mask = torch.ones(series_tokens.shape[:2], dtype=torch.bool, device=series.device)
        if self.use_text:
            text, text_mask = self.text_tokens(notes, notes_mask, summary, summary_mask, knowledge, knowledge_mask,
                                               nodes, nodes_mask)
        if self.cross:
            pooled.append(self.series_to_text(series_tokens, text, text_mask).mean(dim=1))
            text_side = self.text_to_series(text, series_tokens, series_mask)
            pooled.append(masked_mean(text_side, text_mask))
        else:
            if self.use_series:
                pooled.append(series_tokens.mean(dim=1))
            if self.use_text:
                pooled.append(masked_mean(text, text_mask))
        logit = self.head(self.fusion(torch.cat(pooled, dim=-1)))
        if baseline is None:
            return logit
        # staged: a stay without any text it reads keeps exactly its GRU's logit
        return baseline + logit * text_mask.any(dim=1).to(logit.dtype)
