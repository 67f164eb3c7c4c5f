"""The reward lab on a round built so the answer is known: prompt A's real music has two styles (6/8 tunes on
one feature axis, 2/4 tunes on another), and its candidates are 6/8 pieces near the centroid and 2/4 pieces
near the real 2/4 tunes. NotaGen's centroid score prefers the 6/8 pieces (the centroid leans their way); the
k-nearest reward and the metre-keeping pair rules keep the real mix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from base.typed_config import ConfigError
from pipelines.campaign.music_metrics import FEATURES, RealMusic
from pipelines.campaign.pairs import round_pairs
from pipelines.campaign.reward_lab import COLUMNS, DEFAULT_SETTINGS, format_lab, run_lab, setting
from pipelines.dpo.config import DPORoundConfig

LINES = {"A": ("%Folk\n", "%Trad\n", "%Solo\n")}
MUSIC = {
    "6/8": dict(zip(FEATURES, (12, 7, 2.6, 1.0, 2.0, 0.7, 6.0, 0.5, 16))),
    "2/4": dict(zip(FEATURES, (14, 7, 2.7, 1.0, 2.5, 0.6, 4.0, 0.5, 16))),
}


def _music(metre: str, spread: float, rng: np.random.Generator) -> dict[str, float]:
    return {f: float(v * (1 + spread * rng.standard_normal())) for f, v in MUSIC[metre].items()}


def _round(n: int = 32) -> tuple[dict, list[dict], list[dict], dict, int]:
    rng = np.random.default_rng(0)
    samples, scores = {}, []
    for i in range(n):
        metre = "6/8" if i % 2 == 0 else "2/4"
        # 6/8 candidates point between the two styles (near the centroid); 2/4 ones at the real 2/4 tunes
        angle = math.radians(40 + rng.uniform(-3, 3)) if metre == "6/8" else math.radians(88 + rng.uniform(-2, 2))
        feature = [math.cos(angle), math.sin(angle)]
        sid = f"s{i:02d}"
        samples[sid] = {"id": sid, "prompt": "A", "seed": i, "text": "".join(LINES["A"]) + f"M:{metre}\n"}
        scores.append(
            {
                "id": sid,
                "prompt": "A",
                "seed": i,
                # the campaign's centroid score: its centroid leans toward the 6/8 style
                "clamp_score": math.cos(angle - math.radians(33.7)),
                "judge_score": 1.0 if metre == "2/4" else 0.0,
                "valid": True,
                "finished": True,
                "plagiarism": False,
                "staves_grouped": True,
                "meter_bars": 16,
                "meter_full": 16 if metre == "6/8" else 12,
                "feature": feature,
                "time_signature": metre,
                "music": _music(metre, 0.3 if metre == "6/8" else 0.05, rng),
            }
        )
    # real held-out pieces: one in 6/8 (on the x axis), three in 2/4 (on the y axis)
    real = [
        {"id": f"r{i}", "prompt": "A", "clamp_score": 0.9, "feature": f, "time_signature": m, "meter_bars": 16}
        for i, (f, m) in enumerate([([1.0, 0.0], "6/8"), ([0.0, 1.0], "2/4"), ([0.0, 1.0], "2/4"), ([0.0, 1.0], "2/4")])
    ]
    texts = {r["id"]: f"M:{r['time_signature']}\n" for r in real}
    return samples, scores, real, texts, 1


REFERENCE = (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), ["A", "A", "A"])  # the real training pieces' features


@pytest.fixture(scope="module")
def music() -> RealMusic:
    rng = np.random.default_rng(1)
    rows = [
        {
            "id": f"t{i}",
            "prompt": "A",
            "split": "train",
            "time_signature": m,
            "music": _music(m, 0.05, rng),
            "stats": {},
        }
        for i, m in enumerate(["6/8"] * 10 + ["2/4"] * 30)
    ]
    rows += [
        {"id": f"b{i}", "prompt": "B", "split": "train", "time_signature": "3/4", "music": _music("6/8", 0.5, rng)}
        for i in range(20)
    ]
    return RealMusic(rows)


def test_settings_name_their_changes_and_refuse_unknown_fields():
    name, cfg = setting(DPORoundConfig(), {"reward": "knn", "reward_k": 3})
    assert name == "reward=knn, reward_k=3" and cfg.reward == "knn" and cfg.reward_k == 3
    assert setting(DPORoundConfig(), {"name": "mine"})[0] == "mine"
    with pytest.raises(ConfigError, match="dpo.rewrad"):
        setting(DPORoundConfig(), {"rewrad": "knn"})
    with pytest.raises(ConfigError, match="reward"):
        setting(DPORoundConfig(), {"reward": "mean"})


def test_the_lab_compares_rewards_and_pair_rules_without_training(music):
    base = DPORoundConfig(select_portion=0.25)
    settings = [
        {"name": "centroid"},
        {"name": "knn", "reward": "knn", "reward_k": 1},
        {"name": "metre/within", "chosen_like_real": ["meter"], "pair_within_style": True},
    ]
    rows = dict(run_lab(base, settings, _round, lambda: REFERENCE, music))
    assert set(COLUMNS) <= set(rows["centroid"])
    # the centroid's chosen are all 6/8 (a quarter of the real pieces): their metre mix is far from the real one
    assert rows["centroid"]["js_meter"] > 0.3 and rows["centroid"]["judge_agrees"] == 0.0
    # the nearest real piece rewards the 2/4 tunes too: the chosen mix moves to the real one, the judge agrees
    assert rows["knn"]["js_meter"] < rows["centroid"]["js_meter"] and rows["knn"]["judge_agrees"] == 1.0
    assert rows["knn"]["direction"] > rows["centroid"]["direction"]
    # keeping the real mix in the chosen and pairing within a metre: chosen 2/4 pieces against rejected 2/4 ones
    assert rows["metre/within"]["js_meter"] < rows["centroid"]["js_meter"]
    text = format_lab(list(rows.items()))
    assert text.splitlines()[0].split()[:3] == ["setting", "pairs", "auc"] and "metre/within" in text


def test_the_default_settings_all_load_and_the_pairs_stage_reports_its_checks(music):
    base = DPORoundConfig(select_portion=0.25)
    assert len({setting(base, s)[0] for s in DEFAULT_SETTINGS}) == len(DEFAULT_SETTINGS)
    samples, scores, real, texts, k = _round()
    warn = round_pairs(samples, scores, LINES, base, k, real, texts, REFERENCE, music)
    assert warn.checks["A"]["direction"] < 0 and warn.dropped == [] and warn.records  # warn: kept, logged
    metrics = warn.metrics()
    assert metrics["pairs/direction"] == warn.checks["A"]["direction"] and metrics["pairs/prompts_dropped"] == 0
    skip = round_pairs(
        samples,
        scores,
        LINES,
        DPORoundConfig(select_portion=0.25, direction_guard="skip"),
        k,
        real,
        texts,
        REFERENCE,
        music,
    )
    assert skip.dropped == ["A"] and skip.records == []
    knn = DPORoundConfig(select_portion=0.25, reward="knn", reward_k=1, direction_guard="skip")
    kept = round_pairs(samples, scores, LINES, knn, k, real, texts, REFERENCE, music)
    assert kept.dropped == [] and kept.records and kept.checks["A"]["direction"] > 0
    # the pair records carry the reward they were ranked by, not the centroid score
    assert all(r.chosen_score > r.rejected_score for r in kept.records)
