"""Music statistics against the real pieces (overlapped area, fidelity, two-sample AUC), the pair checks
before DPO, and the verdict: worked by hand where a number can be, on sets built so the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.campaign.music_metrics import (
    FEATURES,
    Density,
    RealMusic,
    fidelity,
    music_metrics,
    overlaps,
    similarity,
    two_sample_auc,
)
from pipelines.campaign.pair_checks import direction, metre_divergence, prompt_checks, summarise

# two prompts whose music differs in every statistic: A's tunes are short-noted, stepwise and in 6/8,
# B's long-noted, leaping and in 2/4
STYLE = {
    "A": dict(zip(FEATURES, (12, 7, 2.6, 1.0, 2.0, 0.7, 6.0, 0.5, 16))),
    "B": dict(zip(FEATURES, (20, 9, 3.0, 0.9, 4.0, 0.3, 3.0, 1.0, 32))),
}
METRE = {"A": "6/8", "B": "2/4"}


def piece(i: int, prompt: str, like: str | None = None, split: str = "train", seed: int | None = None) -> dict:
    """A piece of ``prompt`` whose statistics are those of ``like``'s style, with a little seeded spread."""
    rng = np.random.default_rng(hash((i, prompt, like, split)) % 2**32)
    style = like or prompt
    music = {f: float(v * (1 + 0.05 * rng.standard_normal())) for f, v in STYLE[style].items()}
    dur = [0] * 9
    dur[1 if style == "A" else 3] = 10
    stats = {"duration": dur, "pitch_class": [3, 0, 2, 0, 2, 1, 0, 3, 0, 2, 0, 1], "interval": [0] * 25}
    return {
        "id": f"{prompt}{split}{i}",
        "prompt": prompt,
        "split": split,
        "seed": i if seed is None else seed,
        "music": music,
        "stats": stats,
        "time_signature": METRE[style],
    }


@pytest.fixture(scope="module")
def real() -> RealMusic:
    rows = [piece(i, p, split=s) for p in "AB" for s, n in (("train", 40), ("eval", 12)) for i in range(n)]
    return RealMusic(rows)


def test_overlapped_area_of_two_kernels_by_hand():
    # one real value at 0 and one sample at 2, both with the floor bandwidth 1: two unit Gaussians 2 apart
    # overlap in 2 Φ(−1) = 0.3173
    d = Density.of(np.array([0.0]), floor=1.0)
    assert d.bandwidth == 1.0
    assert overlaps(d, np.array([2.0]), np.ones((1, 1)))[0] == pytest.approx(0.3173, abs=2e-3)
    assert overlaps(d, np.array([0.0]), np.ones((1, 1)))[0] == pytest.approx(1.0, abs=2e-3)
    # a draw that holds only a nan sample has no density: nan, not 0
    assert math.isnan(overlaps(d, np.array([np.nan, 1.0]), np.array([[1.0, 0.0]]))[0])
    # weights are counts: the draw (2, 0) of the samples (0, 8) is the sample at 0 twice
    twice = overlaps(d, np.array([0.0, 8.0]), np.array([[2.0, 0.0], [1.0, 1.0]]))
    assert twice[0] == pytest.approx(1.0, abs=2e-3) and twice[1] == pytest.approx(0.5, abs=2e-3)


def test_similarity_rises_when_samples_move_to_their_prompts_music(real):
    before = [piece(i, "A", like="B", split="sample") for i in range(20)]
    after = [piece(i, "A", split="sample") for i in range(20)]
    level, gain, per = similarity(real, after, before)
    ceiling = music_metrics(real, after, before)[0]["real/music/similarity"]
    assert level.mean > 0.6 and level.mean == pytest.approx(ceiling, abs=0.2) and per["A"] == level.mean
    assert level.low <= level.mean <= level.high
    assert gain is not None and gain.low > 0.4  # paired: the same seeds drawn for both rounds
    # the same samples in both rounds gain exactly nothing, and their interval is a point
    _, none, _ = similarity(real, after, after)
    assert none is not None and none.mean == 0.0 and none.low == none.high == 0.0


def test_fidelity_counts_samples_put_in_their_own_prompt(real):
    like_b = [piece(i, "A", like="B", split="sample") for i in range(20)]
    like_a = [piece(i, "A", split="sample") for i in range(20)]
    share, gain, per = fidelity(real, like_a, like_b)
    assert share.mean == 1.0 and gain is not None and gain.mean == 1.0 and gain.low == 1.0
    assert per["A"]["real/fidelity"] == 1.0
    drop, fell, per = fidelity(real, like_b, like_a)
    assert drop.mean == 0.0 and fell is not None and fell.high < 0 and per["A"]["fidelity_gain/ci_high"] < 0
    m, _ = music_metrics(real, like_b, like_a)
    assert m["fidelity/falling"] == 1.0


def test_two_sample_auc_tells_foreign_music_apart(real):
    assert two_sample_auc(real, "A", [piece(i, "A", like="B", split="sample") for i in range(20)]) > 0.95
    alike = two_sample_auc(real, "A", [piece(i, "A", split="sample") for i in range(20)])
    assert alike < 0.8  # drawn like the real pieces: no classifier tells them apart reliably
    assert math.isnan(two_sample_auc(real, "A", [piece(0, "A")]))  # too few to cross-validate


def test_pair_direction_by_hand():
    real = [{"music": {f: 0.0 for f in FEATURES}}, {"music": {f: 2.0 for f in FEATURES}}]  # mean 1, std 1
    at = lambda v: {"music": {f: v for f in FEATURES}}  # noqa: E731
    # candidates sit at 0 (z = −1), the real pieces at z = 0: chosen at 2 and rejected at 0 push +, as needed
    assert direction([at(2.0)], [at(0.0)], [at(0.0)], real) == pytest.approx(1.0)
    assert direction([at(0.0)], [at(2.0)], [at(0.0)], real) == pytest.approx(-1.0)
    # pushing along one statistic while the need is along all nine: cos = 1/3
    one = {"music": {f: (2.0 if f == FEATURES[0] else 0.0) for f in FEATURES}}
    assert direction([one], [at(0.0)], [at(0.0)], real) == pytest.approx(1 / 3)
    assert math.isnan(direction([], [at(0.0)], [at(0.0)], real))


def test_pair_checks_of_a_prompt_and_their_names(real):
    cands = [piece(i, "A", like="B" if i % 2 else None, split="sample") for i in range(20)]
    chosen = [c for c in cands if c["time_signature"] == "6/8"][:4]
    rejected = [c for c in cands if c["time_signature"] == "2/4"][:4]
    checks = prompt_checks(real, "A", chosen, rejected, cands)
    assert checks["direction"] > 0.9 and checks["js_meter/chosen"] == 0.0 and checks["js_meter/candidates"] > 0.1
    assert checks["similarity/chosen"] > checks["similarity/candidates"]
    assert metre_divergence([{"time_signature": "6/8"}], [{"time_signature": "2/4"}]) == pytest.approx(1.0)
    away = prompt_checks(real, "A", rejected, chosen, cands)
    summary = summarise({"A": checks, "B": away})
    assert away["direction"] < 0 and summary["pairs/direction_min"] == pytest.approx(away["direction"])
    assert summary["pairs/direction"] == pytest.approx((checks["direction"] + away["direction"]) / 2)
