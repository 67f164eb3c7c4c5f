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
