"""The centroid margin loss, worked out by hand on 2-d features."""

from __future__ import annotations

import math

import pytest
import torch

from evaluators.centroid_margin import CentroidMargin


def test_margin_loss_by_hand_without_centring():
    m = CentroidMargin(margin=0.5, center=False)
    real = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    m.update(real, ["A", "B"])  # centroids: A = (1, 0), B = (0, 2)
    # piece A's copy points at 45°: cos = 0.707; piece B's copy is B itself rotated 90°: cos = 0
    corrupted = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    # A: max(0, 0.5 − 1 + 0.707) = 0.207; B: max(0, 0.5 − 1 + 0) = 0
    assert float(m.loss(real, corrupted, ["A", "B"])) == pytest.approx((0.5 - 1 + math.sqrt(0.5)) / 2, abs=1e-6)


def test_centring_moves_the_origin_to_the_running_mean():
    m = CentroidMargin(margin=1.0, center=True, momentum=0.0)  # momentum 0: the means are the last batch's
    real = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    m.update(real, ["A", "B"])  # mean (1, 1); centred centroids A = (1, 0), B = (−1, 0)
    corrupted = torch.tensor([[1.0, 2.0], [1.0, 1.0]])  # centred: (0, 1) → cos 0 to A; (0, 0) → cos 0
    # A: 1 − 1 + 0 = 0 ... B: 1 − 1 + 0 = 0: both at exactly the margin
    assert float(m.loss(real, corrupted, ["A", "B"])) == pytest.approx(0.0, abs=1e-6)
    swapped = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # each copy sits on the other prompt: cos −1
    assert float(m.loss(real, swapped, ["A", "B"])) == pytest.approx(0.0)  # far below: no loss
    same = real.clone()  # a copy that scores as its real piece: the whole margin is lost
    assert float(m.loss(real, same, ["A", "B"])) == pytest.approx(1.0)


def test_running_means_and_no_loss_before_the_first_batch():
    m = CentroidMargin(margin=0.3, center=False, momentum=0.5)
    assert float(m.loss(torch.ones(1, 2), torch.ones(1, 2), ["A"])) == 0.0
    m.update(torch.tensor([[2.0, 0.0]]), ["A"])
    m.update(torch.tensor([[0.0, 2.0]]), ["A"])
    assert torch.allclose(m.centroids["A"], torch.tensor([1.0, 1.0]))  # 0.5 · old + 0.5 · new
    assert torch.allclose(m.mean, torch.tensor([1.0, 1.0]))
