"""The pure parts of a campaign's stages: pair records, round metrics, config identity, the folder layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.campaign import identity
from pipelines.campaign.layout import Layout
from pipelines.campaign.metrics import format_table, round_metrics, summary, training_metrics
from pipelines.campaign.pairs import round_pairs
from pipelines.dpo.config import DPORoundConfig

LINES = {"A": ("%Folk\n", "%Trad\n", "%Solo\n"), "B": ("%Baroque\n", "%Bach\n", "%Chorus\n")}


def _sample(i: str, prompt: str, body: str) -> dict:
    return {"id": i, "prompt": prompt, "seed": int(i[1:]), "text": "".join(LINES[prompt]) + body}


def _score(i: str, prompt: str, score: float, valid: bool = True, finished: bool = True) -> dict:
    return {
        "id": i,
        "prompt": prompt,
        "clamp_score": score,
        "valid": valid,
        "finished": finished,
        "plagiarism": False,
        "staves_grouped": True,
    }


def test_round_pairs_split_each_text_at_its_prompt_lines_and_follow_the_rules():
    samples = {
        s["id"]: s
        for s in [
            _sample("s1", "A", "X:best\n"),
            _sample("s2", "A", "X:mid\n"),
            _sample("s3", "A", "X:worst\n"),
            _sample("s4", "A", "X:unfinished\n"),
            _sample("s5", "B", "X:b1\n"),
            _sample("s6", "B", "X:b2\n"),
        ]
    }
    scores = [
        _score("s1", "A", 0.9),
        _score("s2", "A", 0.5),
        _score("s3", "A", 0.1),
        _score("s4", "A", 0.95, finished=False),  # the best score, but unfinished: never chosen
        _score("s5", "B", 0.7),
        _score("s6", "B", 0.6, valid=False),
    ]
    result = round_pairs(samples, scores, LINES, DPORoundConfig(select_portion=0.25), round_=2)
    assert result.candidates == 6 and result.excluded == 2
    by_prompt = {r.prompt: r for r in result.records}
    a = by_prompt["A"]
    assert (a.chosen_id, a.rejected_id, a.round) == ("s1", "s3", 2)
    assert a.prompt_text == "%Folk\n%Trad\n%Solo\n" and a.chosen_text == "X:best\n" and a.rejected_text == "X:worst\n"
    assert (a.chosen_score, a.rejected_score, a.chosen_seed, a.rejected_seed) == (0.9, 0.1, 1, 3)
    b = by_prompt["B"]  # the invalid piece is the rejected one
    assert (b.chosen_id, b.rejected_id) == ("s5", "s6")
    assert result.prompts == 2


def test_round_pairs_refuse_a_text_that_does_not_start_with_its_prompt():
    samples = {"s1": _sample("s1", "A", "X:1\n"), "s2": {**_sample("s2", "A", "X:2\n"), "text": "%Other\nX:2\n"}}
    scores = [_score("s1", "A", 0.9), _score("s2", "A", 0.1)]
    with pytest.raises(ValueError, match="s2"):
        round_pairs(samples, scores, LINES, DPORoundConfig(select_portion=0.5), 1)


def test_training_metrics_name_candidates_pairs_and_dpo():
    cand = [_score("s1", "A", 0.2), _score("s2", "A", 0.4, valid=False), _score("s3", "A", math.nan)]
    cand[0].update(meter_bars=4, meter_full=3)
    cand[1].update(meter_bars=4, meter_full=1)
    m = training_metrics(cand, {"pairs/count": 3}, {"rewards/margins": 0.5, "train_loss": 0.6, "steps": 4})
    assert m["candidates/clamp/mean"] == pytest.approx(0.3) and m["candidates/clamp/n"] == 2
    assert m["candidates/validity"] == pytest.approx(2 / 3) and m["candidates/meter_fill"] == pytest.approx(4 / 8)
    assert m["pairs/count"] == 3 and m["rewards/margins"] == 0.5 and m["dpo/loss"] == 0.6 and "steps" not in m


def _eval_row(
    prompt: str, seed: int | None, clamp: float, judge: float, feature: list[float], **guards: object
) -> dict:
    row = {
        "id": f"e-{prompt}-{seed}",
        "prompt": prompt,
        "seed": seed,
        "clamp_score": clamp,
        "judge_score": judge,
        "valid": True,
        "plagiarism": False,
        "finished": True,
        "meter_bars": 2,
        "meter_full": 2,
        "parses_abc": True,
        "feature": feature,
        "stats": {"pitch_class": [1] * 12, "interval": [1] * 25, "duration": [1] * 9},
    }
    row.update(guards)
    return row


def test_round_metrics_by_group_against_round_0_and_the_real_pieces():
    t = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    r0 = [_eval_row("A", k, 0.2 + 0.1 * k, 0.5, t[k], meter_full=1) for k in range(3)] + [
        _eval_row("H", 0, 0.4, 0.4, t[0]),
        _eval_row("H", 1, 0.6, 0.6, t[1]),
    ]
    r1 = [_eval_row("A", k, 0.3 + 0.1 * k, 0.6, t[k], parses_abc=k > 0) for k in range(3)] + [
        _eval_row("H", 0, 0.4, 0.4, t[0]),
        _eval_row("H", 1, 0.6, 0.6, t[1], valid=False),
    ]
    peaked = {"pitch_class": [2] + [0] * 11, "interval": [1] * 25, "duration": [1] * 9}
    real = [_eval_row("A", None, v, 0.9, t[k], stats=peaked) for k, v in enumerate([0.35, 0.45])]
    groups = {"train": {"A"}, "heldout": {"H"}}
    m = round_metrics(r1, real, r0, groups)
    assert m["train/clamp/mean"] == pytest.approx(0.4) and m["train/clamp/n"] == 3
    assert m["train/clamp_gain/mean"] == pytest.approx(0.1) and m["train/clamp_gain/ci_low"] == pytest.approx(0.1)
    assert m["train/judge_gain/mean"] == pytest.approx(0.1)
    assert m["train/real/clamp"] == pytest.approx(0.4) and m["train/real/judge"] == pytest.approx(0.9)
    # real 0.35, 0.45 against samples 0.3, 0.4, 0.5: 0.35 beats 1 of 3, 0.45 beats 2 of 3 → 3/6
    assert m["train/auc_real_vs_samples"] == pytest.approx(0.5)
    assert m["train/above_real"] == pytest.approx(1 / 3)  # only 0.5 is above the real mean 0.4
    assert m["train/parse_abc"] == pytest.approx(2 / 3) and m["train/meter_fill"] == 1.0
    assert m["train/diversity"] == pytest.approx((0 + 2**-0.5 + 2**-0.5) / 3)
    assert m["train/real/diversity"] == pytest.approx(0.0)  # the two real features are orthogonal
    # uniform pitch classes against all on one class: JS = 1 − (H(mixture) − H(uniform) / 2) worked out below
    mix = np.array([(1 / 12 + 1) / 2] + [1 / 24] * 11)
    js = -(mix * np.log2(mix)).sum() - 0.5 * np.log2(12)
    assert m["train/js/pitch_class"] == pytest.approx(js) and m["train/js/interval"] == pytest.approx(0.0)
    assert m["heldout/validity"] == 0.5 and m["heldout/clamp_gain/mean"] == 0.0 and m["heldout/real/pieces"] == 0
    r0m = round_metrics(r0, real, None, groups)
    assert r0m["train/clamp_gain/mean"] == 0.0 and r0m["train/meter_fill"] == pytest.approx(0.5)
    table = format_table([{"round": 0, **r0m}, {"round": 1, **m, "pairs/count": 12, "rewards/margins": 0.8}])
    lines = table.splitlines()
    assert lines[0].startswith("training prompts: 3 samples") and "real: 2 held-out pieces" in lines[0]
    assert lines[1].split()[:2] == ["round", "CLaMP"] and lines[2].split()[0] == "real"
    assert "+0.100 [+0.100, +0.100]" in lines[4] and lines[4].split()[-2:] == ["12", "0.80"]
    assert "held-out prompts" in table
    text = summary([{"round": 0, **r0m}, {"round": 1, **m}])
    assert "CLaMP 0.300 → 0.400" in text and "100% of the gap closed" in text and "meter fill 0.50 → 1.00" in text


def test_config_identity_ignores_where_a_campaign_runs_and_names_what_changed(tmp_path: Path):
    a = {
        "campaign": {"out_dir": "x", "rounds": 3},
        "cluster": {"ray_address": None},
        "dpo": {"beta": 0.1},
        "tracking": {"tracking_uri": "sqlite:///a"},
    }
    moved = json.loads(json.dumps(a))
    moved["campaign"]["out_dir"], moved["cluster"]["ray_address"], moved["tracking"]["tracking_uri"] = "y", "h:1", "b"
    assert identity.changed_sections(a, moved) == []
    other = json.loads(json.dumps(a))
    other["dpo"]["beta"], other["campaign"]["rounds"] = 0.2, 4
    assert identity.changed_sections(a, other) == ["campaign", "dpo"]

    with pytest.raises(FileNotFoundError, match="not a campaign folder"):
        identity.read_state(tmp_path)
    identity.write_state(tmp_path, identity.new_state(a, "default"))
    assert identity.read_state(tmp_path)["config_name"] == "default"
    (tmp_path / "campaign.json").write_text("{not json")
    with pytest.raises(ValueError, match="campaign.json: damaged"):
        identity.read_state(tmp_path)


def test_layout_names_every_place_of_a_round():
    lay = Layout(Path("/c"))
    assert lay.samples(3) == Path("/c/round-03/samples") and lay.eval_scores(0) == Path("/c/round-00/eval/scores")
    assert lay.trained_policy(2) == Path("/c/round-02/dpo/policy") and lay.stage_dir("train") == Path("/c/sft")
    assert lay.pairs(1).name == "pairs.jsonl" and lay.state_file == Path("/c/campaign.json")
