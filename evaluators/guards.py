"""Guard metrics that keep a reward from being gamed: plagiarism, diversity, pitch-class entropy, FMD.

Validity lives in evaluators/validity.py. Everything here is pure numpy / rapidfuzz so it is tested
directly and runs inside any actor.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein

from evaluators.config import PLAGIARISM_THRESHOLD
from evaluators.scores import cosine_matrix


@dataclass
class Plagiarism:
    plagiarism: bool
    max_feature_cosine: float
    max_text_similarity: float
    nearest_reference: int  # index of the reference with the highest feature cosine


def plagiarism(
    texts: list[str],
    features: np.ndarray,
    ref_texts: list[str],
    ref_features: np.ndarray,
    threshold: float = PLAGIARISM_THRESHOLD,
    feature_threshold: float | None = None,
) -> list[Plagiarism]:
    """NotaGen's two rules: feature cosine > threshold to any single reference (its code), or Levenshtein
    similarity > threshold (its README); ``feature_threshold`` (default: ``threshold``) sets the first rule
    apart for an evaluator whose features are less spread than CLaMP 2's. Only references whose length could
    reach the threshold are compared by text, which keeps this linear in practice."""
    if not len(ref_texts):
        return [Plagiarism(False, 0.0, 0.0, -1) for _ in texts]
    feature_threshold = threshold if feature_threshold is None else feature_threshold
    sims = cosine_matrix(features, ref_features)
    ref_lengths = np.array([len(t) for t in ref_texts])
    out = []
    for i, text in enumerate(texts):
        j = int(sims[i].argmax())
        n = len(text)
        near = np.nonzero((ref_lengths >= threshold * n) & (n >= threshold * ref_lengths))[0]
        best_text = max(
            (Levenshtein.normalized_similarity(text, ref_texts[k], score_cutoff=threshold) for k in near), default=0.0
        )
        out.append(
            Plagiarism(
                bool(sims[i, j] > feature_threshold or best_text > threshold), float(sims[i, j]), float(best_text), j
            )
        )
    return out


def copy_cosine(held_out: np.ndarray, train: np.ndarray, quantile: float = 0.99) -> float:
    """The feature cosine that real pieces *not* in ``train`` reach to their nearest train piece, at
    ``quantile``: above it, a piece is closer to a ground-truth piece than distinct real music gets, which
    is what the plagiarism feature rule means to catch (NotaGen's fixed 0.95 assumes CLaMP 2's spread)."""
    if not len(held_out) or not len(train):
        return PLAGIARISM_THRESHOLD
    return float(np.quantile(cosine_matrix(held_out, train).max(axis=1), quantile))


def mean_pairwise_cosine(features: np.ndarray) -> float:
    """Diversity within a set: the mean cosine over distinct pairs (lower = more diverse); nan below 2."""
    n = len(features)
    if n < 2:
        return float("nan")
    sims = cosine_matrix(features, features)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def entropy_bits(counts: Counter | dict) -> float:
    total = sum(counts.values())
    if total == 0:
        return float("nan")
    return float(-sum(c / total * math.log2(c / total) for c in counts.values() if c))


def pitch_classes(interleaved_text: str, score: Any = None) -> Counter:
    """Pitch-class counts of a piece (key signatures and accidentals applied by music21); pass the music21
    ``score`` when the piece was already parsed (``check_validity`` keeps it) to skip a second parse."""
    if score is None:
        from base.abc.score import parse_interleaved

        score = parse_interleaved(interleaved_text)
    return Counter(p.pitchClass for p in score.pitches)


def pitch_class_entropy(interleaved_text: str, score: Any = None) -> float:
    """Shannon entropy (bits, at most log2 12 ≈ 3.585) of the pitch classes; nan when it cannot be read."""
    try:
        return entropy_bits(pitch_classes(interleaved_text, score))
    except Exception:  # an unreadable sample has no pitch content; validity reports why
        return float("nan")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two feature sets: ‖μa−μb‖² + Tr Σa + Tr Σb − 2 Tr √(Σa Σb).

    Tr √(Σa Σb) is computed as the sum of the square roots of the eigenvalues of √Σa Σb √Σa, which is
    symmetric PSD, so no complex sqrtm is needed.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two features on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def set_metrics(
    features: np.ndarray, prompts: list[str], ref_features: np.ndarray, ref_prompts: list[str]
) -> dict[str, float]:
    """Per-prompt diversity (mean pairwise cosine) and Fréchet distance to the prompt's ground truth,
    averaged over prompts with enough samples; keys are stable metric names. Rows with nan are skipped."""
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        if not np.isnan(features[i]).any():
            by_prompt.setdefault(p, []).append(i)
    ref_rows: dict[str, list[int]] = {}
    for j, p in enumerate(ref_prompts):
        ref_rows.setdefault(p, []).append(j)
    div, fmd = [], []
    for p, idx in by_prompt.items():
        if len(idx) >= 2:
            div.append(mean_pairwise_cosine(features[idx]))
        ref = ref_features[ref_rows.get(p, [])]
        if len(idx) >= 2 and len(ref) >= 2:
            fmd.append(frechet_distance(features[idx], ref))
    return {
        "diversity/mean_pairwise_cosine": float(np.mean(div)) if div else math.nan,
        "frechet/mean_per_prompt": float(np.mean(fmd)) if fmd else math.nan,
    }
