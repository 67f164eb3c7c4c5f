"""The campaign's trainer group, driver side: ``num_workers`` DPO ranks started once, trained every round.

The ranks sit in one placement group (a rank per bundle), join one process group (gloo on CPU, NCCL on
GPUs) and build their DeepSpeed engines when the group starts (``dpo_worker.DPOWorker``). A round is one
``train`` call: every rank trains on the round's pairs, rank 0 returns the new policy as version k.

A rank that dies takes the process group with it, so the whole group is started again from the policy the
round began with (saved on disk by the previous round), and the round is run again: from its newest
checkpoint when ``dpo.checkpoint_every`` wrote one, else from its first step. Either way the result is the
one the lost group would have produced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from orchestration.dpo_worker import DPOWorker, RoundJob, TrainerSpec
from orchestration.placement import Reservation

log = logging.getLogger(__name__)


class TrainerLost(RuntimeError):
    """A rank of the group died (the group is gone; the round may be run again on a new one)."""


class TrainerGroup:
    """Long-lived DPO ranks; ``version`` is the round whose policy their engines hold."""

    def __init__(self, spec: TrainerSpec, size: int, reservation: Reservation, threads: int):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        start = time.perf_counter()
        bundle = {"CPU": reservation.cpus, **({"GPU": reservation.gpus} if reservation.gpus else {})}
        # PACK: ranks share nodes where they can, so gradients cross the network only when they must
        self.pg = placement_group([bundle] * size, strategy="PACK")
        ray.get(self.pg.ready())
        remote = ray.remote(DPOWorker)
        self.ranks = [
            remote.options(
                num_cpus=reservation.cpus,
                num_gpus=reservation.gpus,
                max_restarts=0,  # a lost rank breaks the process group: the whole group is rebuilt instead
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            ).remote(i, size, threads)
            for i in range(size)
        ]
        host, port = ray.get(self.ranks[0].rendezvous.remote())
        ray.get([r.setup.remote(host, port, spec) for r in self.ranks])
        self.version = spec.version
        self.start_seconds = time.perf_counter() - start
        log.info(
            "trainer group: %d rank(s) holding policy version %d, started in %.1f s",
            size,
            self.version,
            self.start_seconds,
        )

    def train(self, job: RoundJob) -> tuple[dict[str, Any], ray.ObjectRef]:
        """Round ``job.round`` on every rank; returns rank 0's summary and a reference to the new weights
        (owned by this driver, so they outlive the group)."""
        start = time.perf_counter()
        calls = [r.train_round.options(num_returns=2).remote(job, self.version) for r in self.ranks]
        pending = [summary for summary, _ in calls]
        while pending:
            [done], pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done)
            except ray.exceptions.RayActorError as err:
                self.shutdown()
                raise TrainerLost(f"a trainer rank died in round {job.round} ({type(err).__name__})") from err
            except ray.exceptions.RayTaskError as err:
                # a rank whose peer died fails in its collective; the death, not that failure, is the cause
                lost = self._any_dead(pending)
                self.shutdown()
                if lost:
                    raise TrainerLost(f"a trainer rank died in round {job.round}") from err
                raise
        self.version = job.round
        summary = ray.get(calls[0][0])
        summary["call_seconds"] = time.perf_counter() - start  # the round as the driver saw it
        return summary, calls[0][1]

    @staticmethod
    def _any_dead(pending: list[ray.ObjectRef], timeout: float = 10.0) -> bool:
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                return True
            except ray.exceptions.RayTaskError:
                pass
        return False

    def pids(self) -> list[int]:
        """The ranks' process ids (a test kills one)."""
        import os

        return ray.get([r.__ray_call__.remote(lambda _self: os.getpid()) for r in self.ranks])

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for r in self.ranks:
            ray.kill(r, no_restart=True)
        self.ranks = []
        remove_placement_group(self.pg)
