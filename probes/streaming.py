"""A logistic head trained by streaming the train split block by block: memory O(d^2 + block*d), never O(n*d).

The math follows ``probes.solvers`` (n train rows, d features, K classes), restricted to what two kinds of
pass over the data can give:

* **Pass 1, sufficient statistics** (float64 accumulators, float32 block products, blocks shifted by the
  first block's mean so ``X^T X`` does not cancel): ``n``, ``sum x``, ``X^T X``, the class sums ``Y^T X``
  and the class counts. They give the mean, the covariance ``S`` (normalised by one global scale, as
  ``solvers.fit_eigenbasis``) and its eigendecomposition ``S = V diag(e) V^T`` (one float64 ``eigh``).
* **Ridge path** (no pass): ``W(a) = V diag(1/(e+a)) V^T X_c^T Y / n``, scored on val (val is small and
  held in memory) for every ``a`` in ``heads.RIDGE_ALPHAS``; the best ``a`` is the shrinkage ``base``.
* **Logistic refinement**: mean multinomial cross-entropy + ``lam/2 ||U||^2`` in the whitened basis
  ``z = (x - mean) P``, ``P = diag(scale) V diag(e + base)^-1/2``, i.e. ``lam/2 tr(W^T (S + base I) W)`` on
  normalised features (``LogisticHead`` with ``shrink = base``). ``cov(z)`` is close to the identity, so
  full-batch ``torch.optim.LBFGS`` converges in tens of iterations. Every loss/gradient evaluation is one
  streaming pass: per block, ``logits = (x - mean) @ (P U) + b`` and ``g = (x - mean)^T (softmax - Y)``;
  the chain rule gives ``dU = P^T g / n``, so the data is never whitened (no ``d x d`` product per row).
  ``lam`` walks down a short ladder (``lam * K`` in ``LAM_K_LADDER``), each solve warm-started from the
  previous one (the first from the temperature-scaled ridge solution, mapped into the whitened basis), and
  stops once val no longer clearly improves (or ``max_passes`` is spent). Each rung stops when an iteration
  changes the objective by less than ``tol`` relative to it.
* The best of the ridge (with a temperature fitted on val, so its probabilities are usable) and the
  logistic fits on val (top-1, then val cross-entropy) is kept, mapped back to raw features:
  ``logits = x @ W.T + b`` with ``W.T = P U`` and ``b = b_white - mean @ W.T``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probes import solvers
from probes.heads import RIDGE_ALPHAS, LogisticHead, check_features, check_labels

# lam * K ladder walked by the logistic refinement (the softmax curvature at uniform probabilities is ~1/K).
LAM_K_LADDER = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
# Temperatures tried to calibrate the ridge scores on val.
# Objectives below this count as this for the relative stopping rule (nearly separable problems).
_LOSS_FLOOR = 1e-2
_TEMPERATURES = np.geomspace(0.01, 100.0, 81)

Blocks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def feature_set_blocks(fs: Any, split: str = "train") -> Blocks:
    """A re-iterable source of ``(features fp16, labels)`` blocks of one split of a ``FeatureSet``."""
    plan_fn = getattr(fs, "_plan", None)
    if plan_fn is None:  # another FeatureSet-like object: its own iterator, re-planned every pass
        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for block in fs.iter_blocks(split, dtype=np.float16):
                yield block.features, block.labels
        return blocks
    from featstore.store.shards import read_features

    # FeatureSet.iter_blocks re-reads every shard's ids to plan each pass (~half the time of a pass on
    # small dims); the plan (which rows of which shard, O(n) ints) is made once and reused by every pass.
    index, plan = plan_fn(split)
    labels = [index.labels[dst] for _, _, dst in plan]

    def planned() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for (path, src, _), lab in zip(plan, labels):
            yield read_features(path, src), lab
    return planned


def array_blocks(X: np.ndarray, y: np.ndarray, block_rows: int = 4096) -> Blocks:
    """Blocks over arrays already in memory (tests, and the same code path for small data)."""
    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, len(X), block_rows):
            yield X[lo:lo + block_rows], y[lo:lo + block_rows]
    return blocks


class StreamingLogisticHead(LogisticHead):
    """``LogisticHead``'s contract (predict_proba, state_dict, classes_, n_features_in_, coef_, intercept_),
    trained from a re-iterable source of blocks: see the module docstring. ``max_iter`` bounds the L-BFGS
    iterations of each rung of the ``lam`` ladder (each costs one or a few passes over the data)."""

    def __init__(self, *, max_iter: int = 15, lam_ks: list[float] | None = None, max_passes: int = 80,
                 tol: float = 3e-5, device: str = "cpu", seed: int = 0, **_ignored: Any) -> None:
        super().__init__(max_iter=max_iter, tol=tol, device=device, seed=seed)
        self.lam_ks, self.max_passes = lam_ks, max_passes

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"max_iter": self.max_iter, "lam_ks": self.lam_ks, "max_passes": self.max_passes, "tol": self.tol, "device": self.device,
                "seed": self.seed}

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None, block_rows: int = 4096
            ) -> StreamingLogisticHead:
        """Array entry point (the same streaming code over in-memory blocks)."""
        X = check_features(X)
        y = check_labels(y, len(X))
        return self.fit_blocks(array_blocks(X, y, block_rows), X_val=X_val, y_val=y_val)

    @torch.no_grad()
    @solvers.without_denormals  # softmax probabilities underflow into denormals: 10-20x slower on x86
    def fit_blocks(self, blocks: Blocks, *, X_val: Any, y_val: Any) -> StreamingLogisticHead:
        if X_val is None or y_val is None:
            raise ValueError("the streaming logistic head selects its regularisation on val: pass X_val and y_val")
        t0 = time.perf_counter()
        stats = self._pass_statistics(blocks)
        self.n_train_ = n = stats["n"]
        val = self._encode_val(X_val, y_val)
        xv, yv = torch.from_numpy(val[0]), torch.from_numpy(val[1])
        basis = self._basis(stats)
        k = len(self.classes_)
        counts = stats["counts"]

        # ridge path, in closed form from the statistics
        vs = (basis.scale[:, None] * basis.eigvecs).double()
        xty = stats["class_sums"] - counts[:, None] * stats["mean_shifted"][None, :]  # centred Y^T X [K, d]
        bmat = (vs.T @ xty.T) / n  # [d, K]
        prior = (counts / n).float()
        ev = (xv - basis.mean) @ vs.float()
        e = basis.eigvals.double()
        accs = []
        for alpha in RIDGE_ALPHAS:
            scores = ev @ (bmat / (e + alpha)[:, None]).float() + prior
            accs.append((scores.argmax(1) == yv).float().mean().item())
        self.ridge_path_ = [{"alpha": a, "val_top1": acc} for a, acc in zip(RIDGE_ALPHAS, accs)]
        base = max(zip(accs, RIDGE_ALPHAS))[1]  # ties: the stronger shrinkage
        coef_white = (bmat / (e + base)[:, None])  # [d, K], eigen coordinates of the ridge weights
        ridge_wt = (vs @ coef_white).float()
        ridge_b = prior - basis.mean @ ridge_wt
        temp, ridge_loss = _fit_temperature(xv @ ridge_wt + ridge_b, yv)
        ridge = {"kind": "ridge", "alpha": base, "val_top1": max(accs), "val_loss": ridge_loss,
                 "wt": ridge_wt / temp, "b": ridge_b / temp, "lam": math.nan, "n_iter": 0}
        self.selection_ = [{k_: v for k_, v in ridge.items() if k_ not in ("wt", "b")}]

        # logistic refinement in the whitened basis, warm-started from the ridge solution
        proj = (vs * (e + base).rsqrt()).float()  # P: (x - mean) @ P are whitened coordinates
        # warm start: the temperature-scaled ridge weights in whitened coordinates (U = P^-1 W^T), log-prior bias
        u0 = ((e + base).sqrt()[:, None] * coef_white).float() / temp
        theta = torch.cat([u0, prior.clamp_min(1e-12).log()[None, :]], 0)
        best, self.n_passes_ = ridge, 0
        ladder = self.lam_ks or LAM_K_LADDER
        previous, f_scale = None, math.log(k)
        for lam_k in ladder:
            lam = lam_k / k
            theta, n_iter, passes, f_scale = self._lbfgs(blocks, basis.mean, proj, theta, lam, n, f_scale)
            self.n_passes_ += passes
            wt = proj @ theta[:-1]
            b = theta[-1] - basis.mean @ wt
            logits = xv @ wt + b
            fit = {"kind": "logistic", "alpha": base, "lam": lam, "n_iter": n_iter,
                   "val_top1": (logits.argmax(1) == yv).float().mean().item(),
                   "val_loss": torch.nn.functional.cross_entropy(logits, yv).item(), "wt": wt, "b": b}
            self.selection_.append({k_: v for k_, v in fit.items() if k_ not in ("wt", "b")})
            if _better(fit, best) or best["kind"] == "ridge" and _better_or_equal(fit, best):
                best = fit
            if previous is not None and not _clearly_better(fit, previous):
                break  # going down the ladder no longer pays on val: stop
            if self.n_passes_ >= self.max_passes:
                break  # pass budget spent (each pass reads the whole train split)
            previous = fit
        self.kind_, self.alpha_ = best["kind"], base
        W, bias = best["wt"].T.contiguous(), best["b"]
        self._W, self._b = W.float(), bias.float()
        self.coef_, self.intercept_ = self._W.numpy(), self._b.numpy()
        self.C_ = 1.0 / (best["lam"] * n) if best["kind"] == "logistic" else math.inf
        self.shrink_ = base
        self.n_iter_ = best["n_iter"]
        self.seconds_ = time.perf_counter() - t0
        return self

    def selected_params(self) -> dict[str, Any]:
        self._check_fitted()
        return {"C": self.C_ if math.isfinite(self.C_) else None, "shrink": self.shrink_}

    # --- passes
    def _pass_statistics(self, blocks: Blocks) -> dict[str, Any]:
        """Pass 1: exact float64 sufficient statistics, labels encoded on the fly."""
        n, shift, s1, gram, csum, cnt, d = 0, None, None, None, {}, {}, None
        for xb, yb in blocks():
            if len(yb) == 0:
                continue
            x = torch.from_numpy(np.ascontiguousarray(xb)).float()
            if not torch.isfinite(x).all():
                raise ValueError("train features contain NaN or infinity")
            if shift is None:
                d = x.shape[1]
                shift = x.mean(0)
                s1 = torch.zeros(d, dtype=torch.float64)
                gram = torch.zeros(d, d, dtype=torch.float64)
            elif x.shape[1] != d:
                raise ValueError(f"blocks have different widths: {d} and {x.shape[1]}")
            xc = x - shift
            n += len(x)
            s1 += xc.sum(0, dtype=torch.float64)
            gram += (xc.T @ xc).double()
            yb = np.asarray(yb)
            uniq, inv = np.unique(yb, return_inverse=True)
            sums = torch.zeros(len(uniq), d).index_add_(0, torch.from_numpy(inv.astype(np.int64)), xc).double()
            for j, label in enumerate(uniq.tolist()):
                csum[label] = csum[label] + sums[j] if label in csum else sums[j]
                cnt[label] = cnt.get(label, 0) + int((inv == j).sum())
        if n == 0:
            raise ValueError("the train blocks are empty")
        self.classes_ = np.array(sorted(csum))
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least 2")
        self.n_features_in_ = d
        self._label_codes = {c: i for i, c in enumerate(self.classes_.tolist())}
        return {"n": n, "shift": shift.double(), "mean_shifted": s1 / n, "gram": gram,
                "class_sums": torch.stack([csum[c] for c in self.classes_.tolist()]),
                "counts": torch.tensor([cnt[c] for c in self.classes_.tolist()], dtype=torch.float64)}

    def _basis(self, stats: dict[str, Any]) -> solvers.Eigenbasis:
        n, m = stats["n"], stats["mean_shifted"]
        cov = stats["gram"] / n - torch.outer(m, m)
        var = cov.diagonal().clamp_min(0)
        scale = float(var.mean().clamp_min(1e-30).rsqrt())
        eigvals, eigvecs = torch.linalg.eigh(cov * scale ** 2)
        mean = (stats["shift"] + m).float()
        return solvers.Eigenbasis(mean, torch.full((len(m),), scale, dtype=torch.float32),
                                  eigvals.clamp_min(0).float(), eigvecs.float().contiguous())

    def _codes(self, yb: np.ndarray) -> Tensor:
        yb = np.asarray(yb)
        idx = np.searchsorted(self.classes_, yb)
        return torch.from_numpy(idx.astype(np.int64))

    def _lbfgs(self, blocks: Blocks, mean: Tensor, proj: Tensor, theta: Tensor, lam: float, n: int,
               f_scale: float) -> tuple[Tensor, int, int, float]:
        """Full-batch L-BFGS at ``lam``; every closure call is one streaming pass. Stops once an iteration
        changes the objective by less than ``tol`` relative to ``f_scale`` (the previous rung's objective)."""
        param = theta.clone().requires_grad_(False)
        passes, last = [0], [f_scale]

        def closure() -> Tensor:
            passes[0] += 1
            u, b = param[:-1], param[-1]
            wt = proj @ u
            grad_w = torch.zeros_like(wt)
            grad_b = torch.zeros_like(b)
            loss = 0.0
            for xb, yb in blocks():
                x = torch.from_numpy(np.ascontiguousarray(xb)).float() - mean
                y = self._codes(yb)
                logits = torch.addmm(b, x, wt)
                logp = torch.log_softmax(logits, 1)
                loss -= float(logp.gather(1, y[:, None]).sum(dtype=torch.float64))
                r = logp.exp_()
                r[torch.arange(len(y)), y] -= 1.0
                grad_w.addmm_(x.T, r)
                grad_b += r.sum(0)
            gu = proj.T @ grad_w / n + lam * u
            param.grad = torch.cat([gu, (grad_b / n)[None, :]], 0)
            last[0] = loss / n + 0.5 * lam * float((u.double() ** 2).sum())
            return torch.tensor(last[0])

        scale = max(f_scale, _LOSS_FLOOR)
        opt = torch.optim.LBFGS([param], lr=1.0, max_iter=self.max_iter, history_size=10,
                                tolerance_grad=self.tol * 1e-2 * scale, tolerance_change=self.tol * scale,
                                line_search_fn="strong_wolfe")
        with torch.enable_grad():  # LBFGS.step is decorated no_grad anyway; the closure needs no autograd
            opt.step(closure)
        n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
        return param.detach().clone(), n_iter, passes[0], last[0]


def _better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["val_top1"], -a["val_loss"]) > (b["val_top1"], -b["val_loss"])


def _clearly_better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Better top-1, or the same top-1 and a val loss lower by more than 2%."""
    return a["val_top1"] > b["val_top1"] or (a["val_top1"] == b["val_top1"] and a["val_loss"] < 0.98 * b["val_loss"])


def _better_or_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["val_top1"] >= b["val_top1"]


def _fit_temperature(scores: Tensor, y: Tensor) -> tuple[float, float]:
    """The temperature (on a log grid) that minimises val cross-entropy of ``scores / T``."""
    best = (math.inf, 1.0)
    for t in _TEMPERATURES:
        loss = torch.nn.functional.cross_entropy(scores / float(t), y).item()
        best = min(best, (loss, float(t)))
    return best[1], best[0]
