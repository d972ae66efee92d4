"""Each few-shot head against a reference: open_clip, scikit-learn, or the paper's formula on a tiny case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from probes.fewshot import (FEWSHOT_HEADS, ClapHead, FewShotLogistic, KNNHead, LPPHead, PrototypeHead, TipAdapterHead,
                            WiseHead, ZeroShotHead, ZSLogisticHead)
from probes.fewshot._common import l2rows, softmax
from probes.fewshot._solver import anchored_objective
from probes.fewshot.lpp import lipschitz_bounds
from probes.fewshot.topk import blocked_topk


def _clip_like(k: int = 6, d: int = 16, shots: int = 4, n_val: int = 10, seed: int = 0):
    """Unit class directions; images = direction + noise; text = direction + noise, 3 templates."""
    rng = np.random.default_rng(seed)
    mu = l2rows(rng.standard_normal((k, d)))
    y = np.repeat(np.arange(k), shots)
    x = (mu[y] + 0.25 * rng.standard_normal((len(y), d))).astype(np.float32)
    yv = np.repeat(np.arange(k), n_val)
    xv = (mu[yv] + 0.25 * rng.standard_normal((len(yv), d))).astype(np.float32)
    text = l2rows(mu[:, None] + 0.3 * rng.standard_normal((k, 3, d))).astype(np.float32)
    return x, y, xv, yv, text


@pytest.fixture()
def tiny_clip(tmp_path: Path) -> str:
    import open_clip

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path / "TinyFewshot-test.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "TinyFewshot-test"


def test_zeroshot_equals_open_clip_classifier(tiny_clip: str) -> None:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(tiny_clip, pretrained=None).eval()
    tok = open_clip.get_tokenizer(tiny_clip)
    names, templates = ["cat", "dog", "sketch of a boat", "tree"], ["a photo of a {}.", "a drawing of a {}."]
    ref = open_clip.build_zero_shot_classifier(model, tok, names, templates)  # [D, K], unit columns
    with torch.no_grad():
        emb = model.encode_text(tok([t.format(c) for c in names for t in templates]), normalize=True)
        img = model.encode_image(torch.rand(8, 3, 32, 32))
    text = emb.reshape(len(names), len(templates), -1).numpy()
    head = ZeroShotHead(calibrate=False).fit(img.numpy(), np.arange(8) % 4, text=text)
    expected = 100.0 * torch.nn.functional.normalize(img, dim=-1) @ ref
    np.testing.assert_allclose(head.decision_function(img.numpy()), expected.numpy(), rtol=1e-4, atol=1e-4)
    calibrated = ZeroShotHead().fit(img.numpy(), np.arange(8) % 4, text=text)
    np.testing.assert_array_equal(calibrated.predict(img.numpy()), head.predict(img.numpy()))


def test_knn_uniform_equals_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    x, y, q = rng.standard_normal((200, 12)), rng.integers(0, 5, 200), rng.standard_normal((50, 12))
    ours = KNNHead(k=7, weighting="uniform").fit(x, y)
    ref = KNeighborsClassifier(n_neighbors=7, metric="cosine", algorithm="brute").fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(q), ref.predict_proba(q), atol=1e-6)


def test_knn_temperature_vote_is_dinov2s_formula() -> None:
    rng = np.random.default_rng(2)
    x, y, q = rng.standard_normal((30, 5)), rng.integers(0, 3, 30), rng.standard_normal((4, 5))
    head = KNNHead(k=4, temperature=0.1).fit(x, y)
    sims = l2rows(q) @ l2rows(x).T
    expected = np.zeros((4, 3))
    for i in range(4):
        nn = np.argsort(-sims[i])[:4]
        w = np.exp(sims[i, nn] / 0.1) / np.exp(sims[i, nn] / 0.1).sum()
        np.add.at(expected[i], y[nn], w)
    np.testing.assert_allclose(head.predict_proba(q), expected, atol=1e-5)


def test_blocked_topk_equals_full_and_leaves_one_out() -> None:
    rng = np.random.default_rng(3)
    keys = torch.as_tensor(l2rows(rng.standard_normal((1000, 8))), dtype=torch.float32)
    s, i = blocked_topk(keys[:300], keys, 5, query_block=64, key_block=128)
    full_s, full_i = (keys[:300] @ keys.T).topk(5, dim=1)
    torch.testing.assert_close(s, full_s)
    assert torch.equal(i, full_i)
    _, loo = blocked_topk(keys[:300], keys, 5, query_block=64, key_block=128, self_index=np.arange(300))
    assert not (loo == torch.arange(300)[:, None]).any()
    assert torch.equal(loo[:, :4], full_i[:, 1:5])


def test_knn_selects_on_val_or_by_leave_one_out() -> None:
    x, y, xv, yv, _ = _clip_like(shots=10)
    loo = KNNHead(k=(1, 3, 9), temperature=(0.05, 0.5)).fit(x, y)
    assert loo.selection_.startswith("leave-one-out") and loo.k_ in (1, 3, 9)
    val = KNNHead(k=(1, 3, 9), temperature=(0.05, 0.5)).fit(x, y, val=(xv, yv))
    assert val.selection_ == "val"
    one = KNNHead().fit(x[::10], y[::10])
    assert one.selection_.startswith("rule")


def test_prototype_is_nearest_normalised_class_mean() -> None:
    x = np.array([[1, 0], [3, 1], [0, 1], [0, 2]], dtype=np.float32)
    head = PrototypeHead(temperature=0.5).fit(x, np.array([7, 7, 9, 9]))
    c0 = l2rows(l2rows(x[:2]).mean(0))
    np.testing.assert_allclose(head.prototypes_[0], c0, rtol=1e-6)
    q = np.array([[2.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(head.decision_function(q), l2rows(q) @ head.prototypes_.T / 0.5, rtol=1e-6)
    assert head.predict(q)[0] == 7 and list(head.classes_) == [7, 9]


def test_logistic_equals_scikit_learn() -> None:
    x, y, *_ = _clip_like(shots=8)
    n, c = len(y), 0.7
    ours = FewShotLogistic(lam=1 / (2 * c * n), max_iter=500).fit(x, y)
    ref = LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(l2rows(x), y)  # 0.5||W||^2 + C * sum CE
    np.testing.assert_allclose(ours.coef_ - ours.coef_.mean(0), ref.coef_ - ref.coef_.mean(0), atol=2e-3)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(l2rows(x)), atol=1e-4)


def _grad_norm(x, y, w, b, *, scale, lam, anchor) -> float:
    w = torch.as_tensor(w, dtype=torch.float64).requires_grad_(True)
    b = torch.as_tensor(b, dtype=torch.float64).requires_grad_(True)
    loss = anchored_objective(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y), w, b, scale=scale,
                              lam=torch.as_tensor(lam, dtype=torch.float64), anchor=torch.as_tensor(anchor, dtype=torch.float64))
    gw, gb = torch.autograd.grad(loss, [w, b])
    return float(torch.cat([gw.flatten(), gb]).abs().max())


def test_clap_multipliers_and_optimum() -> None:
    x, y, _, _, text = _clip_like()
    head = ClapHead(logit_scale=20.0).fit(x, y, text=text)
    t = l2rows(l2rows(text).mean(1))
    zs = softmax(20.0 * l2rows(x) @ t.T)
    lam = np.array([zs[y == k, k].mean() for k in range(len(t))])
    np.testing.assert_allclose(head.multipliers_, lam, rtol=1e-6)
    # first-order optimality of mean CE(s x W^T) + sum_k lam_k ||w_k - t_k||^2 (no bias in CLAP)
    w = torch.as_tensor(head.coef_, dtype=torch.float64).requires_grad_(True)
    loss = anchored_objective(torch.as_tensor(l2rows(x), dtype=torch.float64), torch.as_tensor(y), w,
                              torch.zeros(len(t), dtype=torch.float64), scale=20.0,
                              lam=torch.as_tensor(lam), anchor=torch.as_tensor(t, dtype=torch.float64))
    assert float(torch.autograd.grad(loss, w)[0].abs().max()) < 1e-4


def test_zslogistic_optimum_and_one_shot_rule() -> None:
    x, y, _, _, text = _clip_like()
    head = ZSLogisticHead(lam=0.3, logit_scale=20.0).fit(x, y, text=text)
    t = l2rows(l2rows(text).mean(1))
    assert _grad_norm(l2rows(x), y, head.coef_, head.intercept_, scale=20.0, lam=0.3, anchor=t) < 1e-4
    cv = ZSLogisticHead(lam=(0.1, 1.0)).fit(x, y, text=text)
    assert cv.selection_.startswith("cv") and cv.lam_ in (0.1, 1.0)
    one = ZSLogisticHead().fit(x[::4], y[::4], text=text)
    assert one.selection_.startswith("rule") and np.shape(one.lam_) == (len(t),)


def test_lpp_logits_steps_and_descent() -> None:
    x, y, _, _, text = _clip_like()
    head = LPPHead(iters=50, alpha0=5.0).fit(x, y, text=text)
    xn, t = l2rows(x), l2rows(l2rows(text).mean(1))
    np.testing.assert_allclose(head.decision_function(x), xn @ head.coef_.T + head.alpha_ * (xn @ t.T), rtol=1e-5, atol=1e-5)
    xt, tt, yt = torch.as_tensor(xn), torch.as_tensor(t), torch.as_tensor(y)
    z = xt @ tt.T
    l_w, l_a = lipschitz_bounds(xt, z)
    w0 = torch.stack([xt[yt == k].mean(0) for k in range(len(t))])

    def loss(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(xt @ w.reshape(w0.shape).T + a * z, yt)

    h_w, h_a = torch.autograd.functional.hessian(lambda w: loss(w, torch.full((len(t),), 5.0)), w0.flatten()), \
        torch.autograd.functional.hessian(lambda a: loss(w0, a), torch.full((len(t),), 5.0))
    assert torch.linalg.eigvalsh(h_w).max() <= l_w * (1 + 1e-5) and torch.linalg.eigvalsh(h_a).max() <= l_a * (1 + 1e-5)
    fitted = float(loss(torch.as_tensor(head.coef_).flatten(), torch.as_tensor(head.alpha_)))
    assert fitted < float(loss(w0.flatten(), torch.full((len(t),), 5.0)))


def test_tip_adapter_training_free_formula() -> None:
    x, y, xv, _, text = _clip_like()
    head = TipAdapterHead(finetune=False, alpha=2.0, beta=5.5, logit_scale=100.0).fit(x, y, text=text)
    f, keys, t = l2rows(xv), l2rows(x), l2rows(l2rows(text).mean(1))
    expected = 100.0 * f @ t.T + 2.0 * np.exp(-5.5 * (1 - f @ keys.T)) @ np.eye(len(t))[y]
    np.testing.assert_allclose(head.decision_function(xv), expected, rtol=1e-4, atol=1e-3)
    tuned = TipAdapterHead(epochs=5).fit(x, y, text=text)
    assert tuned.selection_.startswith("leave-one-out") and not np.allclose(tuned.keys_, keys)
    assert TipAdapterHead(finetune=False).fit(x[::4], y[::4], text=text).selection_.startswith("rule")


def test_wise_blends_zero_shot_and_probe_weights() -> None:
    x, y, xv, _, text = _clip_like()
    zs = ZeroShotHead(calibrate=False, logit_scale=30.0).fit(x, y, text=text)
    at0 = WiseHead(alpha=0.0, logit_scale=30.0).fit(x, y, text=text)
    np.testing.assert_allclose(at0.decision_function(xv), zs.decision_function(xv), rtol=1e-4, atol=1e-4)
    at1 = WiseHead(alpha=1.0, logit_scale=30.0).fit(x, y, text=text)
    half = WiseHead(alpha=0.5, logit_scale=30.0).fit(x, y, text=text)
    np.testing.assert_allclose(half.decision_function(xv),
                               0.5 * (at0.decision_function(xv) + at1.decision_function(xv)), rtol=1e-4, atol=1e-3)
    assert WiseHead().fit(x, y, text=text).selection_.startswith("cv")


@pytest.mark.parametrize("name", sorted(FEWSHOT_HEADS))
def test_scikit_learn_contract(name: str) -> None:
    x, y, xv, yv, text = _clip_like()
    head = FEWSHOT_HEADS[name]()
    assert clone(head).get_params() == head.get_params()
    fitted = head.fit(x, y, text=text if head.needs_text else None)
    assert fitted is head and head.n_features_in_ == x.shape[1] and list(head.classes_) == list(range(6))
    proba = head.predict_proba(xv)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert head.score(xv, yv) > 0.5  # well above chance (1/6) on this easy case
    scores = cross_val_score(FEWSHOT_HEADS[name](), x, y, cv=2, params={"text": text} if head.needs_text else None)
    assert len(scores) == 2


@pytest.mark.parametrize("bad", [KNNHead(k=0), KNNHead(weighting="x"), PrototypeHead(temperature=-1),
                                 FewShotLogistic(lam=-1.0), ClapHead(strength=0.0), LPPHead(iters=0),
                                 TipAdapterHead(beta=0.0), WiseHead(alpha=2.0), ZSLogisticHead(lam=0.0),
                                 ZeroShotHead(logit_scale=0.0)])
def test_bad_parameters_fail_before_any_state(bad) -> None:
    x, y, _, _, text = _clip_like()
    with pytest.raises(ValueError):
        bad.fit(x, y, text=text)
    assert not hasattr(bad, "n_features_in_") and not hasattr(bad, "classes_")


def test_text_heads_say_what_is_missing() -> None:
    x, y, *_ = _clip_like()
    with pytest.raises(ValueError, match="text"):
        ClapHead().fit(x, y)
    with pytest.raises(ValueError, match="dim"):
        ZeroShotHead().fit(x, y, text=np.ones((6, 5), dtype=np.float32))
