"""The scalar music statistics of a piece, worked out by hand on tunes built so the answer is known, and the
rewards beside NotaGen's centroid score, on features whose cosines are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from base.abc.score import parse_interleaved
from evaluators.music_stats import SCALARS, describe, entropy, piece_music, scale_consistency
from evaluators.scores import knn_score, rewards

HEAD = "L:1/8\nM:3/4\nK:G\nV:1 treble\n"


def test_statistics_of_a_known_tune():
    # G A B | c d e | d6 : in G major, 7 notes, 3 bars
    s = describe(parse_interleaved(HEAD + "[V:1]G2 A2 B2|\n[V:1]c2 d2 e2|\n[V:1]d6|\n"))
    assert set(s) == set(SCALARS)
    assert s["pitch_range"] == 9  # G4 (67) to E5 (76)
    assert s["pitch_classes"] == 6  # G A B C D E
    assert s["pitch_class_entropy"] == pytest.approx(-(5 * (1 / 7) * math.log2(1 / 7) + (2 / 7) * math.log2(2 / 7)))
    assert s["scale_consistency"] == 1.0  # all in G major
    # intervals: +2 +2 +1 +2 +2 −2 → mean |interval| 11/6, all steps
    assert s["mean_interval"] == pytest.approx(11 / 6)
    assert s["step_share"] == 1.0
    assert s["notes_per_bar"] == pytest.approx(7 / 3)
    assert s["mean_duration"] == pytest.approx((6 * 1.0 + 3.0) / 7)
    assert s["bars"] == 3


def test_leaps_and_chromatic_notes_move_their_statistics():
    leaps = describe(parse_interleaved(HEAD + "[V:1]G2 g2 G2|\n[V:1]g2 G2 g2|\n"))
    assert leaps["mean_interval"] == 12 and leaps["step_share"] == 0.0 and leaps["pitch_classes"] == 1
    chromatic = describe(parse_interleaved(HEAD + "[V:1]G ^G A ^A B c|\n[V:1]^c d ^d e =f ^f|\n"))
    assert chromatic["pitch_classes"] == 12 and chromatic["scale_consistency"] == pytest.approx(7 / 12)
    assert chromatic["pitch_class_entropy"] == pytest.approx(math.log2(12))


def test_scale_consistency_and_entropy_by_hand():
    c_major = [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    assert scale_consistency(c_major) == 1.0
    assert scale_consistency([1] * 12) == pytest.approx(7 / 12)
    assert math.isnan(scale_consistency([0] * 12))
    assert entropy([1, 1, 1, 1]) == pytest.approx(2.0) and math.isnan(entropy([0, 0]))


def test_a_piece_that_does_not_read_has_a_metre_and_no_statistics():
    out = piece_music("L:1/8\nM:6/8\nK:D\nV:1 treble\n[V:1]this is not music|\n")
    assert out["time_signature"] == "6/8"
    good = piece_music(HEAD + "[V:1]G2 A2 B2|\n[V:1]d6|\n")
    assert good["music"]["bars"] == 2 and sum(good["stats"]["pitch_class"]) == 4


def test_knn_reward_is_the_mean_cosine_to_the_nearest_real_pieces():
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # (1, 1)/√2 has cosines 0.707, 0.707, −0.707 to the three: its 2 nearest average 0.707
    assert knn_score(np.array([[1.0, 1.0]]), reference, 2)[0] == pytest.approx(math.sqrt(0.5))
    assert knn_score(np.array([[1.0, 1.0]]), reference, 3)[0] == pytest.approx(math.sqrt(0.5) / 3)
    assert knn_score(np.array([[1.0, 0.0]]), reference, 10)[0] == pytest.approx(0.0)  # k above the pieces: all


def test_rewards_centroid_knn_and_the_contrast_with_the_nearest_rival_prompt():
    # prompt A's real pieces lie on two styles (x and y axes), prompt B's on −x
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.2]])
    prompts = ["A", "A", "A", "B", "B"]
    style_y = np.array([[0.0, 1.0]])
    # the centroid of A is (2/3, 1/3): a piece in A's second style scores cos 0.447 to it ...
    assert rewards(style_y, ["A"], ref, prompts, "centroid")[0] == pytest.approx(1 / math.sqrt(5))
    # ... and 1 with its nearest real piece (k = 1): the style is real music of the prompt
    assert rewards(style_y, ["A"], ref, prompts, "knn", k=1)[0] == pytest.approx(1.0)
    # contrast: minus the best score of another prompt (B's nearest piece, (−1, 0.2), has cos 0.196)
    contrasted = rewards(style_y, ["A"], ref, prompts, "knn", k=1, contrast=1.0, rival_pieces=2)
    assert contrasted[0] == pytest.approx(1.0 - 0.2 / math.sqrt(1.04))
    # a nan feature or a prompt without real pieces has no reward
    out = rewards(np.array([[np.nan, 0.0], [1.0, 0.0]]), ["A", "Z"], ref, prompts, "knn", k=1)
    assert np.isnan(out).all()
    with pytest.raises(ValueError, match="reward must be one of"):
        rewards(style_y, ["A"], ref, prompts, "mean")
