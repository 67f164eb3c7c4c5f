"""The score formula and guard metrics on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators import guards
from evaluators.scores import GLOBAL, centroids, clamp_score, nearest
from evaluators.validity import check_validity

GOOD = "L:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n[V:1]cd ef|[V:2]C,4|\n[V:1]g4|][V:2]G,,4|]\n"


def test_centroid_is_the_mean_and_score_is_the_cosine():
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    cents = centroids(feats, ["a", "a", "b"])
    assert np.allclose(cents["a"], [0.5, 0.5]) and np.allclose(cents[GLOBAL], [4 / 3, 4 / 3])
    # cos([1, 0], [0.5, 0.5]) = 0.5 / (1 · √0.5) = 1/√2
    assert clamp_score(np.array([1.0, 0.0]), cents["a"]) == pytest.approx(1 / math.sqrt(2))
    assert clamp_score(np.array([-2.0, -2.0]), cents["b"]) == pytest.approx(-1.0)
    assert nearest(np.array([[0.1, 1.0]]), {"x": np.array([1.0, 0.0]), "y": np.array([0.0, 1.0])}) == ["y"]


def test_an_exact_copy_is_plagiarism_and_a_new_piece_is_not():
    refs = [GOOD, GOOD.replace("cd ef", "ed cB")]
    ref_f = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    new = GOOD.replace("cd ef|", "GA Bc|").replace("g4|]", "c4|]")
    hits = guards.plagiarism([GOOD, new], np.array([[0.1, 0.2, 0.9], [0.0, 0.0, 1.0]]), refs, ref_f)
    assert hits[0].plagiarism and hits[0].max_text_similarity == 1.0  # caught by the text rule
    assert not hits[1].plagiarism and hits[1].max_text_similarity < 0.95
    # the feature rule alone: a different text whose feature is the reference's
    [hit] = guards.plagiarism([new], np.array([[2.0, 0.01, 0.0]]), refs, ref_f)
    assert hit.plagiarism and hit.max_feature_cosine > 0.95 and hit.nearest_reference == 0


def test_a_broken_bar_is_invalid():
    assert check_validity(GOOD).valid
    broken = GOOD.replace("[V:1]cd ef|", "[V:1]cd e|")  # 3 eighths against a 2/4 bar in the bass
    v = check_validity(broken)
    assert not v.aligned and not v.valid


def test_diversity_entropy_and_frechet():
    assert guards.mean_pairwise_cosine(np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(1.0)
    assert guards.mean_pairwise_cosine(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])) == pytest.approx(-1 / 3)
    assert guards.entropy_bits({0: 1, 7: 1}) == pytest.approx(1.0)
    assert guards.pitch_class_entropy(GOOD) == pytest.approx(guards.entropy_bits(guards.pitch_classes(GOOD)))
    assert sorted(guards.pitch_classes(GOOD)) == [0, 2, 4, 5, 7]  # C D E F G
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert guards.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # equal covariances: the distance is the squared mean shift
    assert guards.frechet_distance(a, a + np.array([3.0, 0.0, 4.0])) == pytest.approx(25.0, rel=1e-6)
