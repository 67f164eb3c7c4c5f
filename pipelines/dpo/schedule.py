"""A DPO round's one schedule: how many optimizer steps it takes and each step's learning rate.

The trainer group's loop (``orchestration/dpo_worker.py``) follows it; TRL's own schedule is not used (its
trainer only tokenizes the pairs and computes the loss: ``pipelines.dpo.trainer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.dpo.config import DPORoundConfig


@dataclass(frozen=True)
class RoundSchedule:
    """``per_epoch`` micro-batches per epoch on each rank; whole optimizer steps only, so a trailing partial
    accumulation never leaks its gradient into the next round."""

    per_epoch: int
    steps: int  # optimizer steps in the round (at least one)
    micro_total: int  # micro-batches the round consumes: steps × grad_accum
    lr_peak: float
    warmup_steps: int

    @classmethod
    def of(cls, per_epoch: int, cfg: DPORoundConfig) -> RoundSchedule:
        steps = max(1, math.ceil(cfg.epochs * per_epoch) // cfg.grad_accum)
        return cls(per_epoch, steps, steps * cfg.grad_accum, cfg.lr, cfg.warmup_steps)

    @property
    def epochs(self) -> int:
        """Passes over the data the round starts (the last may stop part way)."""
        return math.ceil(self.micro_total / max(1, self.per_epoch))

    def lr(self, done: int) -> float:
        """The learning rate of the step after ``done`` finished steps: linear warm-up to the peak, then flat."""
        if not self.warmup_steps:
            return self.lr_peak
        return self.lr_peak * min(1.0, (done + 1) / self.warmup_steps)
