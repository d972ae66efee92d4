"""The numerics under the heads: eigenbasis, ridge path, softmax L-BFGS, batched MLP training."""

from __future__ import annotations

import math

import pytest
import torch

from probes.linear import eigenbasis as eb
from probes.linear import objective, ridge
from probes.linear.design import SolverOptions, whiten_split
from probes.linear.path import LamPath, calibrated_xent
from probes.mlp import stacked, trainer
from probes.mlp.batches import TensorBatches
from probes.mlp.schedule import onecycle


def blobs(n: int = 300, d: int = 12, k: int = 4, *, seed: int = 0, scale: float = 3.0):
    """Gaussian classes with anisotropic noise and a large common offset."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * scale
    y = torch.arange(n) % k
    noise = torch.randn(n, d, generator=g) * torch.linspace(0.2, 3.0, d)
    return centers[y] + noise + 50.0, y


def test_eigenbasis_normalises_and_diagonalises():
    X, _ = blobs()
    basis = eb.fit_eigenbasis(X)
    assert basis.eigvals.mean().item() == pytest.approx(1.0, rel=1e-4)
    xs = (X - basis.mean) * basis.scale
    cov = xs.T @ xs / len(X)
    rebuilt = basis.eigvecs @ torch.diag(basis.eigvals) @ basis.eigvecs.T
    assert torch.allclose(cov, rebuilt, atol=1e-4)


def test_standardize_gives_constant_features_zero_scale():
    X, _ = blobs()
    X[:, 3] = 7.0
    basis = eb.fit_eigenbasis(X, standardize=True)
    assert basis.scale[3] == 0
    assert torch.isfinite(basis.eigvals).all()


def test_ridge_path_matches_a_direct_solve():
    X, y = blobs()
    Xv, yv = blobs(seed=1)
    basis = eb.fit_eigenbasis(X)
    alpha = 0.3
    xs, xvs = (X - basis.mean) * basis.scale, (Xv - basis.mean) * basis.scale
    Y = torch.nn.functional.one_hot(y).double()
    W = torch.linalg.solve(xs.double().T @ xs.double() / len(X) + alpha * torch.eye(X.shape[1]),
                           xs.double().T @ Y / len(X))
    expected = ((xvs.double() @ W + Y.mean(0)).argmax(1) == yv).double().mean().item()
    [got] = ridge.ridge_path(basis, X, y, Xv, yv, [alpha], n_classes=4, dtype=torch.float32)
    assert got == pytest.approx(expected)


def whitened_problem(lam: float = 0.05, shrink: float = 0.5):
    X, y = blobs()
    basis = eb.fit_eigenbasis(X)
    data = whiten_split(basis, X, y, None, base=shrink, dtype=torch.float32)
    rung = LamPath(data, shrink=2.0, theta=objective.initial_theta(y, X.shape[1], 4), lam=lam,
                        options=SolverOptions(tol=1e-8))
    return X, y, basis, data, rung


def objective64(data, rung, theta: torch.Tensor) -> torch.Tensor:
    """The penalised objective recomputed independently in float64."""
    logits = data.z.double() @ theta
    ce = torch.nn.functional.cross_entropy(logits, data.y)
    return ce + 0.5 * rung.problem.lam * (rung.weights.double() * theta ** 2).sum()


def test_gradient_matches_autograd():
    _, _, _, data, rung = whitened_problem()
    theta = (torch.randn_like(rung.problem.theta) * 0.1).double().requires_grad_()
    problem = objective.SoftmaxProblem(data.z, data.y, theta.detach().float(), rung.problem.lam,
                                     weights=rung.weights, variance=rung.variance)
    objective64(data, rung, theta).backward()
    assert torch.allclose(problem.grad.double(), theta.grad, atol=1e-6)


def test_lbfgs_reaches_the_optimum():
    _, _, _, data, rung = whitened_problem()
    fit = rung.solve(rung.problem.lam)
    theta = fit.theta.double().requires_grad_()
    objective64(data, rung, theta).backward()
    assert theta.grad.abs().max() < 1e-4
    assert fit.n_iter < 100


def test_path_shift_keeps_curvature_pairs_exact():
    _, _, _, data, rung = whitened_problem(lam=0.1)
    rung.solve(0.1)
    s, y = rung.memory.s[-1].clone(), rung.memory.y[-1].clone()
    rung.memory.shift(-0.05, rung.weights)
    assert torch.allclose(rung.memory.y[-1], y - 0.05 * rung.weights * s)


def test_to_raw_reproduces_whitened_logits():
    X, _, basis, data, rung = whitened_problem()
    fit = rung.solve(rung.problem.lam)
    W, b = basis.to_raw(data.base, fit.theta)
    assert torch.allclose(X @ W.T + b, data.z @ fit.theta, atol=1e-3)


def test_calibrated_xent_finds_the_best_temperature():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(200, 5, generator=g) * 4, torch.randint(0, 5, (200,), generator=g)
    best = calibrated_xent(logits, y).mean()
    for t in (0.3, 1.0, 3.0):
        assert best <= torch.nn.functional.cross_entropy(logits / t, y) + 1e-5


def test_onecycle_matches_torch_scheduler():
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=20)
    for step in range(20):
        factor, beta1 = onecycle(step, 20)
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * factor)
        assert opt.param_groups[0]["betas"][0] == pytest.approx(beta1)
        opt.step()
        sched.step()


def test_one_stacked_head_trains_like_torch_adamw_onecycle():
    X, y = blobs(n=200, d=10)
    X = (X - X.mean(0)) / X.std(0)
    spec = stacked.MLPSpec(lr=3e-3, weight_decay=0.05, hidden=(16,), dropout=0.0)
    options = trainer.TrainOptions(epochs=3, batch_size=64, early_stopping=False)
    model = stacked.init_stacked([spec], 10, 4, seed=0, device=torch.device("cpu"))
    (w1, b1), (w2, b2) = model.head(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        for layer, (w, b) in zip((net[0], net[2]), ((w1, b1), (w2, b2))):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    trainer.train_stacked(model, [spec], TensorBatches(X, y), None, options)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    steps = 3 * math.ceil(200 / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = torch.randperm(200, generator=gen)
        for start in range(0, 200, 64):
            idx = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    (w1, _), (w2, b2) = model.head(0)
    assert torch.allclose(w1, net[0].weight, atol=1e-6)
    assert torch.allclose(w2, net[2].weight, atol=1e-6)
    assert torch.allclose(b2, net[2].bias, atol=1e-6)


def test_batched_heads_equal_heads_trained_alone():
    """Shared init, data order and dropout noise: a head does not feel its neighbours."""
    X, y = blobs(n=200, d=10)
    specs = [stacked.MLPSpec(lr=lr, weight_decay=wd, hidden=(8,), dropout=0.2)
             for lr, wd in ((1e-3, 0.0), (1e-2, 0.1))]
    options = trainer.TrainOptions(epochs=2, batch_size=50, early_stopping=False)
    together = stacked.init_stacked(specs, 10, 4, seed=3, device=torch.device("cpu"))
    trainer.train_stacked(together, specs, TensorBatches(X, y), None, options)
    alone = stacked.init_stacked(specs[1:], 10, 4, seed=3, device=torch.device("cpu"))
    trainer.train_stacked(alone, specs[1:], TensorBatches(X, y), None, options)
    for (wa, ba), (wb, bb) in zip(together.head(1), alone.head(0)):
        assert torch.allclose(wa, wb, atol=1e-6) and torch.allclose(ba, bb, atol=1e-6)


def test_heads_of_different_depths_are_refused():
    specs = [stacked.MLPSpec(1e-3, 0.0, (8,), 0.0), stacked.MLPSpec(1e-3, 0.0, (8, 8), 0.0)]
    with pytest.raises(ValueError, match="same number of hidden layers"):
        stacked.init_stacked(specs, 4, 2, seed=0, device=torch.device("cpu"))
