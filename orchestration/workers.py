"""What every Ray Train worker does first: know its rank and device, and log to the driver's console."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerContext:
    rank: int
    world: int
    device: Any  # torch.device

    @property
    def main(self) -> bool:
        """Rank 0 logs, shows progress and writes the model."""
        return self.rank == 0

    @classmethod
    def current(cls) -> WorkerContext:
        """This worker's context (inside a Ray Train worker), with logging set up."""
        import ray.train
        import ray.train.torch

        _worker_logging()
        ctx = ray.train.get_context()
        return cls(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())

    def all_reduce(self, values: list[float]) -> list[float]:
        """Sum of ``values`` over every worker (a no-op on one)."""
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def _worker_logging() -> None:
    # Ray's worker processes leave the root logger at WARNING; our progress lines go to the driver's console
    for name in ("orchestration", "pipelines"):
        ours = logging.getLogger(name)
        if not ours.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
            ours.addHandler(handler)
            ours.setLevel(logging.INFO)
            ours.propagate = False
