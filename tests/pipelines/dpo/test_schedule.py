"""The round's schedule, worked out by hand."""

from __future__ import annotations

import pytest

from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.schedule import RoundSchedule


def test_steps_are_whole_accumulations_and_never_zero():
    # 10 micro-batches an epoch, 1.5 epochs = 15 micro-batches; 4 per step: 3 whole steps (12 micro-batches)
    s = RoundSchedule.of(10, DPORoundConfig(epochs=1.5, grad_accum=4))
    assert (s.steps, s.micro_total, s.epochs) == (3, 12, 2)
    # fewer micro-batches than one accumulation still makes one step
    s = RoundSchedule.of(2, DPORoundConfig(epochs=1, grad_accum=4))
    assert (s.steps, s.micro_total, s.epochs) == (1, 4, 2)


def test_warm_up_is_linear_to_the_peak_then_flat():
    s = RoundSchedule.of(8, DPORoundConfig(lr=1e-4, warmup_steps=4))
    assert [s.lr(done) for done in range(6)] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4])
    assert RoundSchedule.of(8, DPORoundConfig(lr=1e-4, warmup_steps=0)).lr(0) == 1e-4
