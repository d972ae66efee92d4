"""Choosing (shrink, lam) on val: the bracketing search and the full grid."""

from __future__ import annotations

import math

from probes.linear.design import Design, SolverOptions
from probes.linear.path import Fit, LamPath
from probes.progress import stage


def bracket(rung: LamPath, lams: list[float], start: int, first: Fit, *, tol: float) -> list[Fit]:
    """Bracket the calibrated-val-loss minimum over the ``lam`` grid from index ``start``.

    Goes to weaker values while the loss improves; if the first weaker value is already
    worse, goes to stronger ones instead. Assumes a unimodal curve, which the calibrated loss
    is in practice (raw top-1 is not).
    """
    fits, best = [first], first
    for direction in (1, -1):
        i = start + direction
        while 0 <= i < len(lams):
            fit = rung.solve(lams[i], tol=tol, rival=best)
            fits.append(fit)
            if not fit.fits_better(best):
                break
            best, i = fit, i + direction
        if best is not first:
            break
    return fits


def nearest(grid: list[float], target: float) -> int:
    """Index of the grid value closest to ``target`` on a log scale."""
    return min(range(len(grid)), key=lambda i: abs(math.log(grid[i] / target)))


def search_logistic(data: Design, *, n_classes: int, lams: list[float], shrinks: list[float],
                    start: float, options: SolverOptions,
                    search_tol: float) -> tuple[Fit, list[Fit]]:
    """Choose ``(shrink, lam)`` on val; returns the chosen fit, solved to ``options.tol``,
    and every point visited.

    ``shrinks`` is a ladder (increasing); each rung brackets its best ``lam`` with ``bracket``,
    warm-started from the best point so far (between rungs the best ``lam`` moves roughly
    like ``shrink^-1/2``, as seen on digits and the EVA-like features). The ladder stops at a
    rung clearly worse than the best (paired test on val), or after two rungs without
    improvement. Points are solved to ``search_tol``; the final choice, highest val top-1
    (ties: lower calibrated loss), is then refined.
    """
    fits: list[Fit] = []
    rungs: dict[float, LamPath] = {}
    best, stale, index = None, 0, nearest(lams, start)
    progress = stage("search point")  # adaptive: the number of points is not known in advance
    theta = data.initial_theta(n_classes)
    for shrink in shrinks:
        if best is not None:
            theta = best.theta
            index = nearest(lams, best.lam * math.sqrt(best.shrink / shrink))
        rung = rungs[shrink] = LamPath(data, shrink=shrink, theta=theta, lam=lams[index],
                                    options=options)
        first = rung.solve(lams[index], tol=search_tol, rival=best)
        pruned = best is not None and first.clearly_worse(best)
        visited = [first] if pruned else bracket(rung, lams, index, first, tol=search_tol)
        fits += visited
        rung_best = min(visited, key=lambda f: f.val_loss)
        progress.advance(len(visited), note=f"shrink {shrink:g}: val top-1 {max(f.val_top1 for f in visited):.2%}")
        if rung_best.fits_better(best):
            best, stale = rung_best, 0
            continue
        stale += 1
        if pruned or stale >= 2 or rung_best.clearly_worse(best):
            break
    progress.close()
    chosen = max(fits, key=lambda f: (f.val_top1, -f.val_loss))
    return refine(rungs[chosen.shrink], chosen), fits


def refine(rung: LamPath, fit: Fit) -> Fit:
    """Re-solve ``fit`` to the rung's own tolerance, warm from its search solution."""
    if fit.tol <= rung.options.tol:
        return fit
    rung.restart(fit.theta, fit.lam)
    polished = rung.solve(fit.lam)
    polished.n_iter += fit.n_iter
    return polished



def grid_logistic(data: Design, *, n_classes: int, lams: list[float], shrinks: list[float],
                  options: SolverOptions, search_tol: float) -> tuple[Fit, list[Fit]]:
    """Every ``(shrink, lam)`` of a grid, for sweep tables: each rung walks the whole
    (decreasing) ``lam`` path warm, and starts from the previous rung's first solution.
    Returns the best by val top-1 (ties: lower calibrated loss), refined, and all points."""
    fits: list[Fit] = []
    rungs: dict[float, LamPath] = {}
    theta, prev = data.initial_theta(n_classes), None
    progress = stage("configuration", len(shrinks) * len(lams))
    for shrink in shrinks:
        if prev is not None:
            theta = prev.theta
        rung = rungs[shrink] = LamPath(data, shrink=shrink, theta=theta, lam=lams[0], options=options)
        path = []
        for lam in lams:
            path.append(rung.solve(lam, tol=search_tol))
            progress.advance(note=f"shrink {shrink:g}, C {1 / lam:.3g}")
        fits += path
        prev = path[0]
    progress.close()
    chosen = max(fits, key=lambda f: (f.val_top1, -f.val_loss))
    return refine(rungs[chosen.shrink], chosen), fits
