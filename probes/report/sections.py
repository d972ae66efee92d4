"""HTML fragments of the report: metrics, per-class accuracy, confused pairs, audit findings."""

from __future__ import annotations

from html import escape
from typing import Any, Callable

import numpy as np

from probes.runs import Predictions

Thumb = Callable[[str], "str | None"]  # image id -> data URI


def table(head: list[str], rows: list[list[tuple[str, Any]]], *, cls: str = "", numeric: set[int] = frozenset()) -> str:
    """A sortable table: each cell is (shown text, sort value)."""
    ths = "".join(f'<th data-num="{int(i in numeric)}">{escape(h)}</th>' for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f'<td data-v="{escape(str(v))}">{t}</td>' for t, v in r) + "</tr>" for r in rows)
    return f'<table class="sortable {cls}"><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>'


def pct(v: float | None) -> tuple[str, Any]:
    return ("–", -1) if v is None else (f"{v:.1%}", round(v, 6))


def metrics_section(rows: dict[str, dict[str, Any]], seconds: dict[str, float]) -> str:
    body = [[(f"#{k + 1} {escape(n)}", n), (str(m["n"]), m["n"]), pct(m["top1"]), pct(m["top5"]), (f"{m['macro_f1']:.3f}", m["macro_f1"]),
             (f"{m['ece']:.3f}", m["ece"]), (f"{seconds.get(n, 0):.1f}", seconds.get(n, 0))] for k, (n, m) in enumerate(rows.items())]
    return table(["run", "n", "top-1", "top-5", "macro-F1", "ECE", "fit s"], body, numeric={1, 2, 3, 4, 5, 6})


def per_class_section(rows: dict[str, dict[str, Any]], classes: list[str], support: np.ndarray) -> str:
    names = list(rows)
    body = []
    for k, c in enumerate(classes):
        accs = [rows[n]["per_class_acc"][c] for n in names]
        body.append([(escape(c), c), (str(int(support[k])), int(support[k])), *[pct(a) for a in accs]])
    head = ["class", "images", *[f"top-1 #{k + 1}" for k in range(len(names))]]  # runs numbered as in the metrics
    return ('<input class="filter" placeholder="filter classes..." aria-label="filter classes">'
            f'<div class="scroll">{table(head, body, numeric=set(range(1, 2 + len(names))))}</div>')


def _figure(uri: str | None, caption: str) -> str:
    img = f'<img class="thumb" src="{uri}" alt="">' if uri else '<div class="thumb missing">no image</div>'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def confused_section(p: Predictions, classes: list[str], thumb: Thumb, *, pairs: int = 10, per_pair: int = 8) -> str:
    """The most frequent (true, predicted) pairs, each with its misclassified images and their top-3."""
    pred = p.probs.argmax(1)
    wrong = np.flatnonzero(pred != p.labels)
    if not len(wrong):
        return "<p>No misclassified images.</p>"
    keys, counts = np.unique(np.stack([p.labels[wrong], pred[wrong]], 1), axis=0, return_counts=True)
    out = []
    for (t, q), n in sorted(zip(map(tuple, keys), counts), key=lambda kv: -kv[1])[:pairs]:
        rows = wrong[(p.labels[wrong] == t) & (pred[wrong] == q)]
        rows = rows[np.argsort(-p.probs[rows, q])][:per_pair]
        figs = []
        for r in rows:
            top = np.argsort(-p.probs[r])[:3]
            cap = "<br>".join(f"{escape(classes[c])} {p.probs[r, c]:.0%}" for c in top)
            figs.append(_figure(thumb(str(p.ids[r])), f'<span class="id">{escape(str(p.ids[r]))}</span><br>{cap}'))
        out.append(f'<div class="pair"><h3>{escape(classes[t])} → predicted {escape(classes[q])} '
                   f'<small>({n} images)</small></h3><div class="figs">{"".join(figs)}</div></div>')
    return "".join(out)


def audit_section(clusters: list[dict[str, Any]], issues: list[dict[str, Any]], summary: str, note: str,
                  thumb: Callable[[str, str], "str | None"], *, limit: int = 20) -> str:
    parts = [f"<p>{escape(summary)}</p>"]
    if note:
        parts.append(f'<p class="note">{escape(note)}</p>')
    for c in clusters[:limit]:
        figs = "".join(_figure(thumb(m["split"], m["id"]), f'{escape(m["split"])}/<span class="id">{escape(m["id"])}</span>')
                       for m in c["images"][:8])
        kind = ("LEAK " if c["leak"] else "") + f'{c["kind"]} duplicates, {"+".join(c["splits"])}, min cos {c["min_cos"]:.3f}'
        parts.append(f'<div class="pair{" leak" if c["leak"] else ""}"><h3>cluster {c["cluster"]}: {escape(kind)} '
                     f'<small>({len(c["images"])} images)</small></h3><div class="figs">{figs}</div></div>')
    if issues:
        figs = "".join(_figure(thumb(r["split"], r["id"]),
                               f'<span class="id">{escape(r["id"])}</span><br>given {escape(r["given"])} {r["given_prob"]:.0%}'
                               f'<br>suggested {escape(r["suggested"])} {r["suggested_prob"]:.0%}') for r in issues[:limit * 2])
        parts.append(f'<h3>Likely label errors <small>({len(issues)}; least likely given label first)</small></h3>'
                     f'<div class="figs">{figs}</div>')
    return "".join(parts)
