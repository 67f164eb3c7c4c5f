"""The pure parts of a campaign's stages: pair records, round metrics, config identity, the folder layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.campaign import identity
from pipelines.campaign.layout import Layout
from pipelines.campaign.metrics import eval_metrics, training_metrics
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
    m = training_metrics(cand, {"pairs/count": 3}, {"rewards/margins": 0.5, "train_loss": 0.6, "steps": 4})
    assert m["candidates/mean"] == pytest.approx(0.3) and m["candidates/scored"] == 2
    assert m["candidates/validity_rate"] == pytest.approx(2 / 3)
    assert m["pairs/count"] == 3 and m["rewards/margins"] == 0.5 and m["dpo/loss"] == 0.6 and "steps" not in m


def test_eval_metrics_add_diversity_and_frechet_distance_to_the_prompts_ground_truth():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 4)).astype(np.float32)
    feats = ref[:4] + 0.01
    scores = [
        {**_score(f"s{i}", "A", 0.5), "judge_score": 0.4, "pitch_class_entropy": 2.0, "feature": f.tolist()}
        for i, f in enumerate(feats)
    ]
    m = eval_metrics(scores, ref, ["A"] * 20)
    cos = feats @ feats.T / np.outer(np.linalg.norm(feats, axis=1), np.linalg.norm(feats, axis=1))
    assert m["diversity/mean_pairwise_cosine"] == pytest.approx((cos.sum() - 4) / 12, abs=1e-5)
    assert m["frechet/mean_per_prompt"] > 0 and m["clamp/mean"] == 0.5 and m["judge/mean"] == pytest.approx(0.4)


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
