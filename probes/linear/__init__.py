"""The logistic head's numerics: whitened eigenbasis, closed-form ridge path, softmax L-BFGS, (shrink, lam) search.

The linear math, in one place (n train rows, d features, K classes):

* **Normalise** on train: ``x_s = (x - mean) * scale``. By default ``scale`` is one global
  factor (mean feature variance -> 1), which keeps the relative scale of the features; per-
  feature standardisation is an option (it inflates near-constant features, e.g. the border
  pixels of digits, and cost 0.5-1 point there). ``S = cov(x_s) = V diag(e) V^T`` is
  eigendecomposed once, in float64; ``mean(e) = 1``, so every shrinkage below is scale-free.
* **Ridge path.** One-hot least squares, ``W(a) = V diag(1/(e+a)) B`` with
  ``B = V^T X_s^T Y / n``: each value ``a`` costs one small matmul, so a whole path is scored
  on val for the price of the eigendecomposition. Its best ``a`` seeds the search below.
* **Logistic objective.** Mean multinomial cross-entropy + ``lam/2 tr(W^T (S + eps I) W)``
  (bias unpenalised): ordinary L2 measured in the data's metric. ``eps -> inf`` is plain L2
  (scikit-learn's family, up to scale); small ``eps`` also penalises the logits' variance on
  train. Both ends win somewhere (eps ~ 1: 90.7% vs 82% on the EVA-like synthetic features;
  eps >= 10 on digits), so the search walks ``(eps, lam)``. ``C = 1 / (lam * n)``.
* **Whitened basis.** Solved in ``z = x_s V diag(e + base)^-1/2`` with ``base`` the ridge's
  choice: ``cov(z) = diag(e/(e+base))`` is close to the identity, so L-BFGS needs tens of
  iterations, not hundreds. There the penalty is ``lam/2 sum_j w_j |u_j|^2`` with
  ``w_j = (e_j + eps)/(e_j + base)``: every ``eps`` shares one ``z`` and one set of
  coordinates, and a diagonal Hessian model (``objective.SoftmaxProblem``) absorbs the conditioning
  that large ``eps`` brings back.
* **Path.** ``lam`` decreases, each solution warm-starts the next, and the L-BFGS curvature
  pairs are kept: the penalty Hessian is ``lam diag(w)``, so a pair's ``y`` moves by exactly
  ``dlam * w * s``.
* **Logits are linear in the weights**: the solver keeps the train logits in float32 and
  updates them by ``t * z @ p`` along a direction ``p``, so an iteration costs exactly two
  matmuls (``z @ p`` and ``z^T (P - Y)``, bf16 when allowed) whatever the line search tries,
  and the objective carries no bf16 rounding noise.
* **Back to raw features**: ``logits = x @ W.T + b`` with
  ``W.T = diag(scale) V diag(e+base)^-1/2 U`` and ``b = b_white - mean @ W.T``.
"""

