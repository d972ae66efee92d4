"""Likely label errors from out-of-fold probabilities: the confident-learning rule (Northcutt et al. 2021).

cleanlab implements the same rule but brings pandas, termcolor and tqdm for ~30 lines of numpy; the
rule below is cleanlab's ``filter_by="confident_learning"``: an image is a likely error when it is
*confidently* another class (its probability of that class reaches the class's average self-confidence)
and not confidently its given one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelIssues:
    """Flagged rows, most suspicious first (lowest probability of the given label)."""

    rows: np.ndarray  # positions into the probabilities given
    given: np.ndarray  # label as stored
    suggested: np.ndarray  # the confident class
    given_prob: np.ndarray  # out-of-fold probability of the given label
    suggested_prob: np.ndarray


def confident_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class: the mean probability of that class over the images labeled with it (inf when unseen)."""
    k = probs.shape[1]
    out = np.full(k, np.inf, dtype=np.float64)
    for c in np.unique(labels):
        out[c] = probs[labels == c, c].mean()
    return out


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Off-diagonal entries of the confident joint: confidently another class than the one given."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    t = confident_thresholds(probs, labels)
    above = probs >= t[None, :]
    masked = np.where(above, probs, -1.0)
    confident = masked.argmax(1)
    has = above.any(1)
    rows = np.flatnonzero(has & (confident != labels))
    given_p = probs[rows, labels[rows]]
    order = np.argsort(given_p, kind="stable")
    rows = rows[order]
    return LabelIssues(rows=rows, given=labels[rows], suggested=confident[rows], given_prob=given_p[order],
                       suggested_prob=probs[rows, confident[rows]])


def oof_probabilities(x: np.ndarray, y: np.ndarray, *, groups: np.ndarray, folds: int = 5,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities of a plain logistic regression on the top 128 principal components
    (a cheap, stable probe: full-width lbfgs took 30 s on 430 blob images), each duplicate cluster inside
    one fold (a copy in the training folds would vouch for a wrong label)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = int(min(folds, np.bincount(y).max()))
    cv = StratifiedGroupKFold(n_splits=max(k, 2), shuffle=True, random_state=seed)
    pca = PCA(n_components=min(128, x.shape[1], len(x) // 2), random_state=seed)
    model = make_pipeline(StandardScaler(), pca, StandardScaler(), LogisticRegression(C=0.1, max_iter=200))
    return cross_val_predict(model, x, y, groups=groups, cv=cv, method="predict_proba")
