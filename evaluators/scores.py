"""Centroids and the CLaMP score, as NotaGen computes them (``statistics.py`` and ``RL/data.py``).

A centroid is the plain mean of the raw (not L2-normalised) features of the ground-truth pieces of a
prompt; a piece's CLaMP score is the cosine between its feature and that centroid.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

GLOBAL = "*"  # the key of the centroid over every ground-truth piece


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows of ``a`` with ``b`` (a vector, or rows broadcast against ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def centroids(features: np.ndarray, keys: list[str], with_global: bool = True) -> dict[str, np.ndarray]:
    """Mean feature per key (a prompt, a composer), plus the global mean under ``GLOBAL``."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) != len(keys):
        raise ValueError(f"{len(features)} features but {len(keys)} keys")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    out = {key: features[idx].mean(0) for key, idx in sorted(groups.items())}
    if with_global and len(features):
        out[GLOBAL] = features.mean(0)
    return out


def clamp_score(feature: np.ndarray, centroid: np.ndarray) -> float:
    """NotaGen's CLaMP 2 score: cosine(centroid, feature)."""
    return float(cosine(np.asarray(feature)[None], np.asarray(centroid))[0])


def nearest(features: np.ndarray, cents: dict[str, np.ndarray]) -> list[str]:
    """The key of the nearest centroid (by cosine) for every feature; ``GLOBAL`` is never a class."""
    keys = [k for k in cents if k != GLOBAL]
    sims = cosine_matrix(features, np.stack([cents[k] for k in keys]))
    return [keys[i] for i in sims.argmax(1)]


# Rewards beside NotaGen's centroid score (dpo.reward): what a round ranks its candidates by. A centroid sits
# between a prompt's styles (its jigs and its reels), so the one style nearest it wins every round; the mean
# cosine to the k nearest real pieces rewards being close to some real piece of the prompt, whichever style
# it has. The contrast subtracts the score the piece gets from the nearest other prompt: a piece like every
# prompt's music at once gains nothing.
REWARDS = ("centroid", "knn")


def knn_score(features: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine of each row of ``features`` to its ``k`` nearest rows of ``reference`` (all of them when
    there are fewer)."""
    sims = cosine_matrix(features, reference)
    k = max(1, min(k, sims.shape[1]))
    return np.sort(sims, axis=1)[:, -k:].mean(1)


def prompt_scores(
    features: np.ndarray, reference: np.ndarray, ref_prompts: list[str], kind: str, k: int, min_pieces: int = 1
) -> dict[str, np.ndarray]:
    """Every prompt's reward (``kind``: centroid or knn) for each row of ``features``; prompts with fewer
    than ``min_pieces`` reference pieces are left out."""
    if kind not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {kind!r}")
    rows: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(ref_prompts):
        rows[p].append(i)
    out = {}
    for p, idx in sorted(rows.items()):
        if len(idx) < min_pieces:
            continue
        ref = np.asarray(reference)[idx]
        out[p] = cosine(features, ref.mean(0)) if kind == "centroid" else knn_score(features, ref, k)
    return out


def rewards(
    features: np.ndarray,
    prompts: list[str],
    reference: np.ndarray,
    ref_prompts: list[str],
    kind: str = "centroid",
    k: int = 5,
    contrast: float = 0.0,
    rival_pieces: int = 10,
) -> np.ndarray:
    """Each row's reward for its own prompt: ``kind``'s score, minus ``contrast`` × the best score any other
    prompt (with at least ``rival_pieces`` reference pieces) gives it; nan for a nan feature or a prompt
    without reference pieces."""
    features = np.asarray(features, dtype=np.float64).reshape(len(prompts), -1)
    ok = ~np.isnan(features).any(1)
    out = np.full(len(prompts), np.nan)
    if not ok.any():
        return out
    scores = prompt_scores(features[ok], reference, ref_prompts, kind, k)
    rivals = {p for p, n in _counts(ref_prompts).items() if n >= rival_pieces}
    for j, i in enumerate(np.flatnonzero(ok)):
        own = scores.get(prompts[i])
        if own is None:
            continue
        value = float(own[j])
        if contrast:
            others = [float(scores[q][j]) for q in rivals if q != prompts[i] and q in scores]
            value -= contrast * max(others) if others else 0.0
        out[i] = value
    return out


def _counts(keys: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for key in keys:
        counts[key] += 1
    return counts
