"""The pure parts of a campaign's stages: pair records, round metrics, config identity, the folder layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipelines.campaign import identity
from pipelines.campaign.layout import Layout
from pipelines.campaign.metrics import format_table, round_metrics, summary, training_metrics, verdict
from pipelines.campaign.pairs import candidates, main_note_length, real_ceilings, round_pairs, style_shares, styles
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


def test_round_pairs_shape_the_chosen_like_the_real_pieces_and_read_the_parse_guard_from_the_scores():
    meters = {"s1": "6/8", "s2": "6/8", "s3": "2/4", "s4": "2/4", "s5": "6/8"}
    samples = {i: _sample(i, "A", f"M:{m}\nK:D\n") for i, m in meters.items()}
    scores = [_score(i, "A", v) for i, v in zip(meters, (0.9, 0.8, 0.5, 0.1, 0.05))]
    for row in scores:
        row["music21_reads"] = row["id"] != "s1"

    def pairs(real_meters: list[str], **cfg) -> list[tuple[str, str]]:
        real = [{"id": f"r{j}", "prompt": "A", "clamp_score": 1.0} for j in range(len(real_meters))]
        texts = {f"r{j}": f"L:1/8\nM:{m}\nK:D\n" for j, m in enumerate(real_meters)}
        result = round_pairs(samples, scores, LINES, DPORoundConfig(select_portion=0.4, **cfg), 1, real, texts)
        return [(r.chosen_id, r.rejected_id) for r in result.records]

    assert pairs(["2/4", "6/8"]) == [("s1", "s4"), ("s1", "s5"), ("s2", "s4"), ("s2", "s5")]
    # music21 cannot read s1, so s3 moves up into the chosen
    guarded = pairs(["2/4", "6/8"], require_music21_reads=True)
    assert guarded == [("s2", "s4"), ("s2", "s5"), ("s3", "s4"), ("s3", "s5")]
    assert pairs(["2/4", "6/8"], require_music21_reads=True, chosen_like_real=["meter"]) == guarded  # one place each
    # the real pieces are all 2/4: both places go to 2/4 pieces, whatever the reward thinks of 6/8
    assert pairs(["2/4", "2/4"], chosen_like_real=["meter"]) == [("s3", "s5"), ("s4", "s5")]


def _durations(counts: dict[int, int]) -> dict[str, list[int]]:
    """Note statistics with these duration-bin counts (bin 1 = eighths, 0 = sixteenths) and steps up a tone."""
    duration = [0] * 9
    for b, n in counts.items():
        duration[b] = n
    interval = [0] * 25
    interval[14] = max(1, sum(counts.values()) - 1)
    return {"pitch_class": [1] * 12, "interval": interval, "duration": duration}


def test_styles_name_metre_and_main_note_length_and_real_pieces_give_their_shares():
    texts = {"s1": "M:6/8\nK:D\n", "s2": "K:D\n", "r1": "M:2/4\n", "r2": "M:2/4\n", "r3": "M:6/8\n"}
    scores = [{"id": "s1", "stats": _durations({1: 9, 0: 3})}, {"id": "s2", "stats": None}]
    assert styles(texts, scores, ["meter", "rhythm"])["s1"] == "meter=6/8 rhythm=0.5"
    assert styles(texts, scores, ["meter", "rhythm"])["s2"] == "meter= rhythm="
    assert styles(texts, scores, ["rhythm"])["s1"] == "rhythm=0.5"
    assert main_note_length(_durations({0: 5, 1: 4})) == "0.25" and main_note_length(_durations({8: 2})) == "other"
    real = [{"id": "r1", "prompt": "A"}, {"id": "r2", "prompt": "A"}, {"id": "r3", "prompt": "A"}]
    shares = style_shares(real, styles(texts, real, ["meter"]))
    assert shares == {"A": {"meter=2/4": 2 / 3, "meter=6/8": 1 / 3}}
    with pytest.raises(ValueError, match="chosen_like_real"):
        DPORoundConfig(chosen_like_real=["key"])


def test_the_real_pieces_ceiling_is_their_mean_or_a_quantile():
    real = [{"prompt": "A", "clamp_score": v} for v in (0.1, 0.2, 0.3, 0.4, 1.0)] + [
        {"prompt": "B", "clamp_score": math.nan}
    ]
    assert real_ceilings(real, None) == {"A": pytest.approx(0.4)}
    assert real_ceilings(real, 0.75) == {"A": pytest.approx(0.4)} and real_ceilings(real, 1.0) == {"A": 1.0}
    rows = [_score("s1", "A", 0.5), _score("s2", "A", 0.35)]
    mean_cap = {c.id: c.excluded for c in candidates(rows, DPORoundConfig(cap_at_real=True), real)}
    assert "over-optimisation" in mean_cap["s1"] and mean_cap["s2"] == ""
    high_cap = candidates(rows, DPORoundConfig(cap_at_real=True, cap_quantile=0.9), real)
    assert [c.excluded for c in high_cap] == ["", ""]  # 0.5 is below the 90th percentile (0.76)


def test_the_typical_notes_guard_holds_candidates_to_their_prompts_real_pieces():
    real = [{"prompt": "A", "clamp_score": 0.5, "stats": _durations({1: 10 - i, 0: i})} for i in range(5)]
    cfg = DPORoundConfig(typical_notes_quantile=1.0)
    rows = [
        {**_score("like", "A", 0.4), "stats": _durations({1: 8, 0: 2})},  # as mixed as the real pieces
        {**_score("unlike", "A", 0.4), "stats": _durations({0: 10})},  # all sixteenths: no real piece is
        {**_score("no-notes", "A", 0.4), "stats": None},
        {**_score("no-real", "B", 0.4), "stats": _durations({1: 10})},  # its prompt has no real statistics
    ]
    why = {c.id: c.excluded for c in candidates(rows, cfg, real)}
    assert why["like"] == ""
    assert (
        why["unlike"]
        == why["no-notes"]
        == why["no-real"]
        == "note lengths or intervals unlike the prompt's real pieces"
    )
    assert all(c.excluded == "" for c in candidates(rows, DPORoundConfig(), real))  # the guard off


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
        "music21_reads": True,
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
    meters = ["6/8", "2/4", "2/4"]
    r1 = [
        _eval_row("A", k, 0.3 + 0.1 * k, 0.6, t[k], music21_reads=k > 0, time_signature=meters[k]) for k in range(3)
    ] + [
        _eval_row("H", 0, 0.4, 0.4, t[0]),
        _eval_row("H", 1, 0.6, 0.6, t[1], valid=False),
    ]
    peaked = {"pitch_class": [2] + [0] * 11, "interval": [1] * 25, "duration": [1] * 9}
    real = [_eval_row("A", None, v, 0.9, t[k], stats=peaked, time_signature="2/4") for k, v in enumerate([0.35, 0.45])]
    groups = {"train": {"A"}, "heldout": {"H"}}
    m = round_metrics(r1, real, r0, groups)
    assert m["train/clamp/mean"] == pytest.approx(0.4) and m["train/clamp/n"] == 3
    assert m["train/clamp_gain/mean"] == pytest.approx(0.1) and m["train/clamp_gain/ci_low"] == pytest.approx(0.1)
    assert m["train/judge_gain/mean"] == pytest.approx(0.1)
    assert m["train/real/clamp"] == pytest.approx(0.4) and m["train/real/judge"] == pytest.approx(0.9)
    # real 0.35, 0.45 against samples 0.3, 0.4, 0.5: 0.35 beats 1 of 3, 0.45 beats 2 of 3 → 3/6
    assert m["train/auc_real_vs_samples"] == pytest.approx(0.5)
    assert m["train/above_real"] == pytest.approx(1 / 3)  # only 0.5 is above the real mean 0.4
    assert m["train/music21_reads"] == pytest.approx(2 / 3) and m["train/meter_fill"] == 1.0
    assert m["train/diversity"] == pytest.approx((0 + 2**-0.5 + 2**-0.5) / 3)
    assert m["train/real/diversity"] == pytest.approx(0.0)  # the two real features are orthogonal
    # uniform pitch classes against all on one class: JS = 1 − (H(mixture) − H(uniform) / 2) worked out below
    mix = np.array([(1 / 12 + 1) / 2] + [1 / 24] * 11)
    js = -(mix * np.log2(mix)).sum() - 0.5 * np.log2(12)
    assert m["train/js/pitch_class"] == pytest.approx(js) and m["train/js/interval"] == pytest.approx(0.0)
    # time signatures 2/3 in 2/4 and 1/3 in 6/8 against all 2/4: mixture (5/6, 1/6)
    kl_samples = 2 / 3 * np.log2((2 / 3) / (5 / 6)) + 1 / 3 * np.log2((1 / 3) / (1 / 6))
    assert m["train/js/meter"] == pytest.approx(0.5 * kl_samples + 0.5 * np.log2(6 / 5))
    assert math.isnan(m["heldout/js/meter"])  # no time signatures recorded: nothing to compare
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
    assert m["train/bars"] == 2.0 and "length 2.0 → 2.0 bars (real 2.0)" in text


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


def _verdict_rows(
    clamp: tuple[float, float, float], music: tuple[float, float, float], js: tuple[float, float], falling: int = 0
):
    first = {"round": 0, "train/clamp/mean": 0.1, "train/js/meter": js[0], "train/music/similarity/mean": 0.7}
    last = {
        "round": 3,
        "train/clamp/mean": 0.1 + clamp[0],
        "train/js/meter": js[1],
        "train/music/similarity/mean": 0.7 + music[0],
    }
    for name, (mean, low, high) in (("clamp_gain", clamp), ("music_gain", music)):
        last.update({f"train/{name}/mean": mean, f"train/{name}/ci_low": low, f"train/{name}/ci_high": high})
    last["train/fidelity/falling"] = float(falling)
    return [first, last]


def test_the_verdict_says_the_music_improved_only_when_what_is_not_the_reward_agrees():
    up = (0.5, 0.3, 0.7)
    good = verdict(_verdict_rows(up, (0.04, 0.01, 0.07), (0.20, 0.22)))
    assert good.startswith("the music improved: CLaMP +0.50, music statistics +0.040 [+0.010, +0.070]")
    # the case: the score climbs while the music moves away and the metres collapse onto 6/8
    gamed = verdict(
        _verdict_rows(up, (-0.05, -0.08, -0.02), (0.20, 0.42)),
        details={"top_metre": {"train": "6/8"}},
    )
    assert gamed == (
        "CLaMP +0.50 but music statistics -0.050 [-0.080, -0.020] (further from the real pieces), metres "
        "collapsing toward 6/8 (JS M 0.20 → 0.42): the reward is being gamed, the music did not improve"
    )
    # a prompt whose fidelity fell is named, with its share before and after
    details = {
        "groups": {"train": ["Folk_Traditional, American_Solo melody"]},
        "per_prompt_music": {
            "Folk_Traditional, American_Solo melody": {
                "fidelity/mean": 0.19,
                "fidelity_gain/mean": -0.38,
                "fidelity_gain/ci_high": -0.2,
            },
            "Folk_Traditional, Scottish_Solo melody": {
                "fidelity/mean": 0.1,
                "fidelity_gain/mean": -0.5,
                "fidelity_gain/ci_high": -0.3,
            },
        },
    }
    fell = verdict(_verdict_rows(up, (0.04, 0.01, 0.07), (0.20, 0.21), falling=1), details=details)
    assert "fidelity falling for American (0.57 → 0.19)" in fell and "Scottish" not in fell and "gamed" in fell
    drifting = verdict(_verdict_rows(up, (0.04, 0.01, 0.07), (0.08, 0.17)), details={"top_metre": {"train": "6/8"}})
    assert "metres drifting toward 6/8 (JS M 0.08 → 0.17)" in drifting and "improved" not in drifting
    flat = verdict(_verdict_rows(up, (0.01, -0.02, 0.04), (0.20, 0.21)))
    assert "do not confirm it" in flat and "improved" not in flat
    none = verdict(_verdict_rows((0.02, -0.05, 0.09), (0.04, 0.01, 0.07), (0.20, 0.21)))
    assert (
        none == "no improvement: the reward did not rise (CLaMP +0.02 [-0.05, +0.09]); "
        "music statistics +0.040 [+0.010, +0.070]"
    )
    worse = verdict(_verdict_rows((0.02, -0.05, 0.09), (-0.07, -0.1, -0.04), (0.20, 0.21)))
    assert worse.count("music statistics") == 1 and "further from the real pieces" in worse
    old = verdict(
        [{"round": 0, "train/clamp/mean": 0.1}, {"round": 1, "train/clamp/mean": 0.2, "train/clamp_gain/mean": 0.1}]
    )
    assert "no music statistics were measured" in old


def test_a_summary_without_valid_samples_says_so_instead_of_nan():
    rows = [
        {"round": 0, "train/clamp/mean": math.nan, "train/validity": 0.0},
        {"round": 1, "train/clamp/mean": math.nan, "train/validity": 0.0},
    ]
    text = summary(rows)
    assert "no valid samples" in text and "nan" not in text


def test_what_was_written_under_an_old_name_reads_under_the_one_name_now(tmp_path: Path):
    from evaluators.music_stats import music21_reads_of
    from pipelines.campaign.compare import load_rounds
    from pipelines.campaign.metrics import migrate

    # score rows and metrics.json of a campaign from before "music21 reads it" had one name
    assert music21_reads_of({"parses_abc": False}) is False and music21_reads_of({"music21_reads": True}) is True
    assert music21_reads_of({}) is None
    old = {
        "round": 1,
        "train/parse_abc": 0.5,
        "heldout/real/parse_abc": 1.0,
        "parse_abc": 0.25,
        "train/clamp/mean": 0.3,
    }
    assert migrate(old) == {
        "round": 1,
        "train/music21_reads": 0.5,
        "heldout/real/music21_reads": 1.0,
        "music21_reads": 0.25,
        "train/clamp/mean": 0.3,
    }
    (tmp_path / "campaign.json").write_text("{}")
    Layout(tmp_path).metrics(1).parent.mkdir()
    Layout(tmp_path).metrics(1).write_text(json.dumps({"metrics": old}))
    assert load_rounds(tmp_path)[0]["train/music21_reads"] == 0.5


def test_an_old_config_name_loads_as_its_field_and_both_names_at_once_are_refused():
    from base.typed_config import ConfigError, from_dict

    assert from_dict(DPORoundConfig, {"require_parse": True}).require_music21_reads is True
    with pytest.raises(ConfigError, match="require_parse: the old name of require_music21_reads"):
        from_dict(DPORoundConfig, {"require_parse": True, "require_music21_reads": False})
