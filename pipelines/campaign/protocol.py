"""The statistics that tell an effect from noise: bootstrap intervals, paired differences, a headroom AUC.

A round's mean CLaMP score over a few dozen samples moves by several hundredths between two draws of the
same policy; a claim that a round made the policy better needs an interval. Every round samples the same
prompts with the same seeds (round 0 included), so a round is compared with round 0 sample by sample
(``paired``), which removes the spread between seeds from the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}/mean": self.mean,
            f"{prefix}/ci_low": self.low,
            f"{prefix}/ci_high": self.high,
            f"{prefix}/n": float(self.n),
        }

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "-"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


def bootstrap_mean(
    values: list[float] | np.ndarray,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The mean of ``values`` (nan dropped) with a percentile bootstrap interval; seeded, so reproducible."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return NAN_INTERVAL
    if len(v) == 1:
        return Interval(float(v[0]), float(v[0]), float(v[0]), 1)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(v.mean()), float(low), float(high), len(v))


K = TypeVar("K", bound=Hashable)


def paired(after: Mapping[K, float], before: Mapping[K, float], seed: int = 0) -> Interval:
    """Mean of ``after[k] − before[k]`` over the keys both score (a sample's seed, say), with its interval."""
    common = [k for k in after.keys() & before.keys() if not (math.isnan(after[k]) or math.isnan(before[k]))]
    keys = sorted(common, key=str)
    return bootstrap_mean([after[k] - before[k] for k in keys], seed)


def auc(positives: list[float] | np.ndarray, negatives: list[float] | np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half: 1 when every real piece outscores every
    sample, 0.5 when the score cannot tell them apart (the Mann-Whitney U statistic, normalised)."""
    p = np.asarray([x for x in positives if not math.isnan(x)], dtype=np.float64)
    n = np.asarray([x for x in negatives if not math.isnan(x)], dtype=np.float64)
    if not len(p) or not len(n):
        return math.nan
    above = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return float(above / (len(p) * len(n)))
