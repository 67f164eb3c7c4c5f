"""How much each long-lived role reserves, so that samplers, scorers and the trainer group all fit at once.

The roles live for the whole campaign but take turns: while the trainer trains, the samplers wait for the
next policy. Where the cluster holds every role's configured reservation, each role gets it. Where it does
not (a laptop: 2 cores, and a trainer that wants both), every reservation is scaled by the same factor and
the roles share the cores in turn ("colocated", as verl places its worker groups on one resource pool);
each actor still runs the threads it was configured with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """``count`` actors of one role, each wanting ``cpus`` CPUs and ``gpus`` GPUs."""

    name: str
    count: int
    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class Reservation:
    """What one actor of a role reserves from Ray, and whether it was scaled down to share."""

    cpus: float
    gpus: float
    colocated: bool


def _floor(x: float) -> float:
    # Ray counts resources in units of 1e-4; rounding down keeps the scaled total within the capacity
    return math.floor(x * 1e4) / 1e4


def reservations(roles: list[Role], cpus: float, gpus: float) -> dict[str, Reservation]:
    """Each role's per-actor reservation on a cluster of ``cpus`` CPUs and ``gpus`` GPUs in all."""
    need_cpus = sum(r.count * r.cpus for r in roles)
    need_gpus = sum(r.count * r.gpus for r in roles)
    if need_gpus > 0 and gpus <= 0:
        raise ValueError(f"the roles ask for {need_gpus:g} GPUs and the cluster has none")
    f_cpu = min(1.0, cpus / need_cpus) if need_cpus > 0 else 1.0
    f_gpu = min(1.0, gpus / need_gpus) if need_gpus > 0 else 1.0
    return {
        r.name: Reservation(_floor(r.cpus * f_cpu), _floor(r.gpus * f_gpu), f_cpu < 1.0 or (r.gpus > 0 and f_gpu < 1.0))
        for r in roles
    }
