"""DPOP against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.dpo.loss import dpop_loss


def test_dpop_by_hand():
    # pair 1: the chosen gained likelihood (no penalty): logits = 0.1 · ((−10 + 12) − (−20 + 21)) = 0.1
    # pair 2: the chosen lost 2 nats against the reference: penalty 2 · λ 10 = 20;
    #         logits = 0.1 · ((−12 + 15) − (−10 + 14) − 20) = 0.1 · (3 − 4 − 20) = −2.1
    policy_c = torch.tensor([-10.0, -12.0])
    policy_r = torch.tensor([-20.0, -15.0])
    ref_c = torch.tensor([-12.0, -10.0])
    ref_r = torch.tensor([-21.0, -14.0])
    losses, rc, rr = dpop_loss(policy_c, policy_r, ref_c, ref_r, beta=0.1, lam=10.0)
    expected = [math.log(1 + math.exp(-0.1)), math.log(1 + math.exp(2.1))]
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)
    assert rc.tolist() == pytest.approx([0.2, -0.2]) and rr.tolist() == pytest.approx([0.1, -0.1])


def test_without_penalty_dpop_is_dpo():
    pc, pr, rc, rr = (torch.randn(5) for _ in range(4))
    pc = torch.maximum(pc, rc)  # the chosen never falls below the reference
    dpop, _, _ = dpop_loss(pc, pr, rc, rr, beta=0.3, lam=10.0)
    dpo = -torch.nn.functional.logsigmoid(0.3 * ((pc - rc) - (pr - rr)))
    assert torch.allclose(dpop, dpo)


def test_the_penalty_pushes_the_chosen_up():
    pc = torch.tensor([-11.0], requires_grad=True)
    losses, _, _ = dpop_loss(pc, torch.tensor([-30.0]), torch.tensor([-10.0]), torch.tensor([-10.0]))
    losses.sum().backward()
    assert pc.grad.item() < 0  # gradient descent raises log π(y_w)
