"""Bootstrap intervals, paired differences and the headroom AUC on numbers constructed so the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.campaign.protocol import auc, bootstrap_mean, paired


def test_bootstrap_interval_brackets_the_mean_and_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 25), rng.normal(0.5, 0.1, 400)
    a, b = bootstrap_mean(small), bootstrap_mean(large)
    assert a.low < a.mean < a.high and a.n == 25 and a.mean == pytest.approx(small.mean())
    # a 95% interval of a mean is about ±1.96 σ/√n: 0.039 for 25 values, 0.0098 for 400
    assert (a.high - a.low) / 2 == pytest.approx(1.96 * small.std() / 5, rel=0.15)
    assert (b.high - b.low) == pytest.approx((a.high - a.low) / 4, rel=0.25)
    assert bootstrap_mean(small, seed=3) == bootstrap_mean(small, seed=3)  # seeded: reproducible


def test_bootstrap_of_constant_values_and_of_nothing():
    c = bootstrap_mean([0.7, 0.7, 0.7, math.nan])
    assert (c.mean, c.low, c.high, c.n) == (pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.7), 3)
    assert math.isnan(bootstrap_mean([]).mean) and str(bootstrap_mean([])) == "-"


def test_paired_difference_sees_a_small_shift_that_unpaired_spread_would_hide():
    rng = np.random.default_rng(0)
    seeds = [f"s{i}" for i in range(40)]
    base = dict(zip(seeds, rng.normal(0.5, 0.2, 40)))  # a wide spread between seeds...
    after = {k: v + 0.02 + rng.normal(0, 0.005) for k, v in base.items()}  # ...and a small, steady gain
    d = paired(after, base)
    assert d.mean == pytest.approx(0.02, abs=0.003) and d.low > 0 and d.excludes_zero
    # unpaired, the two rounds' intervals overlap: no effect could be claimed from them
    a, b = bootstrap_mean(list(after.values())), bootstrap_mean(list(base.values()))
    assert a.low < b.high
    # only keys scored in both rounds count
    d2 = paired({"s0": 1.0, "x": 5.0, "s1": math.nan}, {"s0": 0.5, "s1": 0.2})
    assert (d2.mean, d2.n) == (0.5, 1)


def test_auc_is_one_when_real_pieces_always_win_and_one_half_when_nothing_tells_them_apart():
    assert auc([0.9, 0.8, 0.85], [0.1, 0.2, 0.3]) == 1.0
    assert auc([0.1, 0.2], [0.5, 0.6]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 0.5  # ties count half
    # by hand: pairs (0.6>0.5) (0.6<0.7) (0.8>0.5) (0.8>0.7) → 3 of 4
    assert auc([0.6, 0.8], [0.5, 0.7]) == 0.75
    rng = np.random.default_rng(2)
    same = auc(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000))
    assert same == pytest.approx(0.5, abs=0.03)
    assert math.isnan(auc([], [0.1]))
