"""`probes fewshot`: the few-shot protocol over a stored feature set; parses, calls one function, renders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from featstore.cli.boundary import CacheOpt, boundary, err, out


@boundary
def fewshot(
    features: Annotated[str, typer.Option("--features", "-f", help="Feature set(s): encoder name or key, comma-separated to concatenate per image.")],
    text: Annotated[Optional[str], typer.Option(help="Class-name text embeddings: a store text set name, or FILE.npz with classes and embeddings [K, D] / [K, T, D] (same sorted classes).")] = None,
    shots: Annotated[str, typer.Option(help="Shots per class, comma-separated.")] = "1,2,4,8,16",
    seeds: Annotated[int, typer.Option(min=1, help="Draws per k (the same draws for every head).")] = 5,
    heads: Annotated[Optional[str], typer.Option(help="Comma-separated heads: zeroshot, knn, prototype, logistic, clap, lpp, tip, wise, zslogistic. Default: all (with --text) or knn,prototype,logistic.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for fewshot.json and fewshot.png.")] = Path("fewshot"),
    cache: CacheOpt = None,
) -> None:
    """Few-shot curves: exactly k train images per class per seed, hyper-parameters chosen inside the shots, scored on val."""
    from probes.fewshot.run import fewshot_from_store

    ks = [int(v) for v in shots.split(",") if v.strip()]
    names = [h.strip() for h in heads.split(",") if h.strip()] if heads else None
    with err.status("few-shot protocol ...") as status:
        run = fewshot_from_store([f.strip() for f in features.split(",") if f.strip()], text=text, shots=ks,
                                 seeds=seeds, heads=names, out=out_dir, cache=cache,
                                 progress=lambda m: status.update(f"few-shot protocol: {m}"))
    res = run.result
    table = Table(title=f"top-1 on {res.meta['evaluated_on']}: mean ± 95% interval over {seeds} seeds", title_justify="left")
    for c in ("head", *(f"k={k}" for k in ks), "seconds", "hyper-parameters chosen by"):
        table.add_column(c, justify="left" if c in ("head", "hyper-parameters chosen by") else "right")
    for head in dict.fromkeys(r["head"] for r in res.rows):
        rows = {r["shots"]: r for r in res.rows if r["head"] == head}
        cells = ([f"{rows[0]['mean']:.1%}"] * len(ks) if head == "zeroshot"
                 else [f"{rows[k]['mean']:.1%} ± {rows[k]['ci95']:.1%}" for k in ks])
        sel = " / ".join(sorted({r["selection"] for r in rows.values()}))
        table.add_row(head, *cells, f"{sum(r['seconds'] for r in rows.values()):.1f}", sel)
    out.print(table)
    out.print(f"wrote {run.json} and {run.png}", highlight=False)


def register_fewshot(app: typer.Typer) -> None:
    app.command("fewshot")(fewshot)
