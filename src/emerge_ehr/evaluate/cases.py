"""The report's case studies: the highest-risk test stays and a random sample, each with its risk, what moved it
(the explanation stage's contributions), and the knowledge retrieved for it.

Note text is shown only where ``explain.show_note_text`` allows (reports get shared); otherwise a note chunk is
named by its position and its contribution alone.
"""

from __future__ import annotations

import numpy as np
import polars as pl

CONTRIBUTIONS = ("series", "notes", "summary", "knowledge", "nodes")
SHOWN_NODES, SHOWN_TRIPLES, SHOWN_CHUNK_WORDS = 5, 3, 60


def pick_cases(explained: pl.DataFrame, cases: int, seed: int) -> pl.DataFrame:
    """The ``cases`` highest-risk stays (``why`` = ``highest risk``) and ``cases`` others drawn at random.

    >>> frame = pl.DataFrame({"stay_id": [1, 2, 3, 4], "probability": [0.1, 0.9, 0.5, 0.3]})
    >>> pick_cases(frame, 1, 0).select("stay_id", "why").rows()[0]
    (2, 'highest risk')
    """
    ranked = explained.sort("probability", "stay_id", descending=[True, False])
    top = ranked.head(cases).with_columns(why=pl.lit("highest risk"))
    rest = ranked.slice(cases)
    chosen = np.sort(np.random.default_rng(seed).choice(rest.height, min(cases, rest.height), replace=False))
    return pl.concat([top, rest[chosen].with_columns(why=pl.lit("random"))])


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _top_slots(names: list[str], scores: list[float], shown: int) -> str:
    """Named slots by the size of their contribution, largest first."""
    pairs = sorted(zip(names, scores), key=lambda pair: -abs(pair[1]))[:shown]
    return "; ".join(f"{name} ({score:+.2f})" for name, score in pairs)


def case_markdown(case: dict, context: dict | None, chunks: list[str] | None, reads: list[str]) -> list[str]:
    """One stay's block: what moved its logit, then its abnormal findings, conditions, relations, notes."""
    lines = [f"**Stay {case['stay_id']}** ({case['why']}): risk {case['probability'] * 100:.1f} %, "
             f"outcome {'positive' if case['label'] == 1 else 'negative'}."]
    variables = ", ".join(f"{name} ({score:+.2f})" for name, score in
                          zip(case["top_variables"], case["top_variable_scores"]))
    if case["series"] is not None:
        lines.append(f"- Time series {_signed(case['series'])}; variables that moved it most: {variables}")
    if context is not None:
        findings = context["abnormal_features"] or []
        lines.append(f"- Abnormal findings: {', '.join(findings) if findings else 'none'}")
        names = context["node_names"] or []
        if "nodes" in reads and case["nodes_slots"]:
            lines.append(f"- Retrieved conditions by contribution: "
                         f"{_top_slots(names, case['nodes_slots'], SHOWN_NODES) or 'none'}")
        else:
            lines.append(f"- Retrieved conditions: {', '.join(names[:SHOWN_NODES]) if names else 'none'}")
        triples = [line for line in (context["triples"] or "").split("\n") if line][:SHOWN_TRIPLES]
        if triples:
            lines.append(f"- Relations: {'; '.join(triples)}")
    for kind in ("summary", "knowledge"):
        if kind in reads and case[kind] is not None:
            lines.append(f"- {'LLM summary' if kind == 'summary' else 'Knowledge text'} {_signed(case[kind])}")
    if "notes" in reads:
        scores = case["notes_slots"] or []
        used = [(slot, score) for slot, score in enumerate(scores) if score != 0.0]
        if not used:
            lines.append("- Notes: none usable for the task")
        else:
            slot, score = max(used, key=lambda pair: abs(pair[1]))
            lines.append(f"- Notes {_signed(case['notes'])} over {len(used)} chunks; the largest, chunk {slot + 1} "
                         f"({score:+.2f})" + (f": \"{_clip(chunks[slot])}\"" if chunks and slot < len(chunks) else ""))
    return lines + [""]


def _clip(text: str) -> str:
    words = text.split()
    return " ".join(words[:SHOWN_CHUNK_WORDS]) + (" ..." if len(words) > SHOWN_CHUNK_WORDS else "")


def cases_markdown(model: str, cases: pl.DataFrame, contexts: dict[int, dict], chunks: dict[int, list[str]] | None,
                   reads: list[str], method: str) -> list[str]:
    """One model's section: a table of the cases' contributions, then one block per case."""
    how = ("exact: the contributions sum to the logit" if method == "exact" else
           "integrated gradients from the all-zero input: the contributions sum to the logit minus the baseline's")
    shown = (["baseline_logit"] if method != "exact" else []) + ["series"] * (cases.get_column("series").null_count()
                                                                              < cases.height)
    shown += [kind for kind in CONTRIBUTIONS[1:] if kind in reads]
    lines = [f"## {model}", "", f"Contributions to the logit ({how}).", "",
             "| stay | why | outcome | risk % | logit | " + " | ".join(shown).replace("baseline_logit", "baseline")
             + " |", "|---|---|---|---|---|" + "---|" * len(shown)]
    for case in cases.iter_rows(named=True):
        lines.append(f"| {case['stay_id']} | {case['why']} | {int(case['label'])} | {case['probability'] * 100:.1f} | "
                     f"{case['logit']:+.2f} | " + " | ".join(_signed(case[kind]) for kind in shown) + " |")
    lines.append("")
    for case in cases.iter_rows(named=True):
        lines += case_markdown(case, contexts.get(case["stay_id"]),
                               chunks.get(case["stay_id"]) if chunks is not None else None, reads)
    return lines


def plot_cases(explained: dict[str, pl.DataFrame], task: str, out: str) -> None:
    """One panel per model: each case's logit as stacked contributions (series, each text kind), the baseline
    logit of integrated gradients as its own bar segment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emerge_ehr.evaluate.plots import save_figure

    kinds = ["baseline_logit", *CONTRIBUTIONS]
    colours = dict(zip(kinds, ["#bbbbbb", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]))
    figure, axes = plt.subplots(1, max(len(explained), 1), figsize=(4.5 * max(len(explained), 1), 4), squeeze=False)
    for ax, (model, cases) in zip(axes[0], explained.items()):
        labels = [f"{stay} ({'+' if label == 1 else '-'}) {p * 100:.0f} %" for stay, label, p in
                  cases.select("stay_id", "label", "probability").rows()]
        for row, case in enumerate(cases.iter_rows(named=True)):
            positive, negative = 0.0, 0.0
            for kind in kinds:
                value = case.get(kind)
                if value is None or value == 0:
                    continue
                start = positive if value > 0 else negative
                ax.barh(row, value, left=start, color=colours[kind], label=kind if row == 0 else None)
                positive, negative = (positive + value, negative) if value > 0 else (positive, negative + value)
            ax.plot([case["logit"]], [row], "k|", ms=12)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("contribution to the logit (|: the logit)", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    figure.suptitle(f"{task}: what moved the risk of the highest-risk and random test stays", fontsize=10)
    save_figure(figure, out)
