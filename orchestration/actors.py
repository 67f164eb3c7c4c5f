"""Ray actors that sample and score, and the pool that feeds them work units and survives their deaths.

A sampler actor holds the current policy, received once per round through the Ray object store; an
evaluator actor holds the evaluator (and the independent judge). Actors restart on failure
(``max_restarts``); the pool sends the unit a dead actor was working on to another actor (or to the
restarted one), so a dead actor costs time, not samples. Units are deterministic (ids and seeds fixed by
the plan), so a retried unit yields exactly what the lost one would have.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from orchestration.weight_sync import WeightMember

if TYPE_CHECKING:
    from evaluators.config import EvaluatorConfig
    from models.sampling_config import SamplingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one actor reserves: CPU cores and GPUs (fractions share one), and the torch threads it runs
    (0: as many as its whole reserved cores; set apart when roles share cores in turn)."""

    cpus: float = 1.0
    gpus: float = 0.0
    threads: int = 0

    def options(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def enter(self) -> str:
        """Set this process up for the reservation; returns the torch device to use."""
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(self.threads or max(1, int(self.cpus)))
        hf_logging.disable_progress_bar()  # one "Loading weights" bar per actor start is noise on the driver
        return "cuda" if self.gpus > 0 and torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ScorerSpec:
    """The evaluator (and the independent judge) a scorer actor loads, with the settings each is read with."""

    evaluator_dir: str
    evaluator: EvaluatorConfig
    judge_dir: str | None = None
    judge: EvaluatorConfig | None = None


class SamplerActor(WeightMember):
    """Generates the samples of a unit with the policy version the unit names (batched, KV-cached).

    Each unit carries a handle on its policy version (``orchestration.weights``): the actor fetches the
    weights on its first unit of a version and keeps them for the next units; a restarted actor simply
    fetches them again. Where the campaign pushes weights (``orchestration.weight_sync``), the version
    arrives before its units, straight into the model (``receive_weights``), and nothing is fetched. Weights
    of another version than the unit's are refused (``StaleWeights``), and every sample records the version
    that generated it.
    """

    def __init__(self, sampling: SamplingConfig, resources: Resources):
        from orchestration.weights import ObjectStoreChannel

        self.sampling, self.device = sampling, resources.enter()
        self.weights_device = self.device
        self.channel = ObjectStoreChannel()
        self.version: int | None = None
        self.sampler: Any = None
        self.received: dict[str, int] = {"pushed": 0, "fetched": 0}  # how each version came (tests read it)

    def _load(self, handle: dict) -> None:
        from models.sampling import Sampler

        if self.version == handle["version"]:
            return
        weights = self.channel.receive(handle)  # refuses weights of another version than the handle's
        self.sampler = Sampler(weights.build(), self.sampling, device=self.device)
        self.version = weights.version
        self.received["fetched"] += 1

    def receive_weights(self, version: int, manifest: Any, handles: list[Any] | None = None) -> None:
        """Version ``version`` pushed through the weight group, loaded into the model in place (on its device)."""
        from models.notagen import NotaGenConfig, NotaGenForCausalLM
        from models.sampling import Sampler
        from orchestration.weights import expect_version

        expect_version(manifest.version, version, "the pushed manifest")
        self.version = None  # until the new weights are all in: a failed push leaves no half-loaded version
        state = self._receive_state(manifest, handles)
        if self.sampler is None:  # a sampler that never held a version (the architecture never changes after)
            model = NotaGenForCausalLM(NotaGenConfig.from_dict(manifest.config))
            self.sampler = Sampler(model, self.sampling, device=self.device)
        self.sampler.model.load_state_dict(state)
        self.version = version
        self.received["pushed"] += 1

    def generate(self, unit: dict) -> list[dict]:
        loading = time.perf_counter()
        self._load(unit["policy"])
        load_seconds = time.perf_counter() - loading  # 0 but for a unit of a new version: moving weights
        specs = unit["specs"]
        start = time.perf_counter()
        samples = self.sampler.generate([list(s["lines"]) for s in specs], [int(s["seed"]) for s in specs])
        seconds = time.perf_counter() - start
        node = ray.get_runtime_context().get_node_id()
        return [
            {
                "id": spec["id"],
                "prompt": spec["prompt"],
                "seed": spec["seed"],
                "text": s.text,
                "interleaved": s.interleaved,
                "error": s.error,
                "finished": s.finished,
                "patches": s.patches,
                "chars": s.chars,
                "stream_cuts": s.stream_cuts,
                "unit_seconds": seconds,
                "load_seconds": load_seconds,
                "node": node,
                "policy_version": self.version,
            }
            for spec, s in zip(specs, samples)
        ]


class ScorerActor:
    """Scores samples with the evaluator (CLaMP score + guards) and, when given, the judge."""

    def __init__(self, spec: ScorerSpec, resources: Resources):
        from evaluators.evaluator import Evaluator

        device = resources.enter()
        self.evaluator = Evaluator.for_config(spec.evaluator_dir, spec.evaluator, device)
        self.judge = Evaluator.for_config(spec.judge_dir, spec.judge, device) if spec.judge_dir and spec.judge else None

    def score(self, unit: dict) -> list[dict]:
        """Score a unit's ``rows`` (id, prompt, seed, interleaved, finished); ``check_music21_reads`` also checks each
        piece with music21's own ABC reader."""
        from pipelines.dpo.pairs import staves_grouped

        rows = unit["rows"]
        texts = [r.get("interleaved") or "" for r in rows]
        prompts = [r["prompt"] for r in rows]
        start = time.perf_counter()
        records = self.evaluator.score(
            texts, prompts, with_features=True, check_music21_reads=unit.get("check_music21_reads", False)
        )
        judged = self.judge.score(texts, prompts, guards_on=False) if self.judge else [None] * len(rows)
        seconds = time.perf_counter() - start
        out = []
        for row, rec, jud in zip(rows, records, judged):
            d = rec.to_dict(with_feature=True)
            d.update(
                {
                    "id": row["id"],
                    "seed": row.get("seed"),
                    "judge_score": jud.clamp_score if jud else float("nan"),
                    "staves_grouped": staves_grouped(row.get("interleaved") or ""),
                    "finished": row["finished"],
                    "unit_seconds": seconds,
                }
            )
            out.append(d)
        return out

    def describe(self, unit: dict) -> list[dict]:
        """The music statistics of a unit's real pieces (``rows``: id, prompt, split, interleaved), read as a
        sample's are when it is scored (``evaluators.music_stats.piece_music``)."""
        from evaluators.music_stats import piece_music

        return [
            {"id": r["id"], "prompt": r["prompt"], "split": r["split"], **piece_music(r["interleaved"])}
            for r in unit["rows"]
        ]


@dataclass
class PoolStats:
    units: int = 0
    retried: int = 0
    actor_failures: int = 0
    replaced: int = 0
    seconds: float = 0.0
    busy_seconds: list[float] = field(default_factory=list)


class ActorPool:
    """A fixed number of restartable actors working through a queue of units."""

    def __init__(
        self,
        actor_cls: type,
        size: int,
        args: tuple,
        resources: Resources,
        max_restarts: int,
        max_unit_retries: int,
        name: str,
    ):
        self.remote_cls = ray.remote(actor_cls)
        self.args, self.name = args, name
        # SPREAD: a pool's actors go to different nodes where they can (samplers and scorers scale out)
        self.options = {
            **resources.options(),
            "max_restarts": max_restarts,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        self.max_restarts, self.max_unit_retries = max_restarts, max_unit_retries
        self.actors = [self._new() for _ in range(size)]
        self.stats = PoolStats()

    def _new(self):
        return self.remote_cls.options(**self.options).remote(*self.args)

    def run(
        self,
        units: list[tuple[str, Any]],
        method: str,
        done: Callable[[str, Any], None],
        feed: queue.Queue | None = None,
    ) -> PoolStats:
        """Call ``method`` on every unit (name, payload); ``done(name, result)`` runs on the driver as each
        unit finishes. A unit whose actor dies is queued again, up to ``max_unit_retries`` times. With
        ``feed``, more units keep arriving through it until it yields None. Returns this call's statistics
        (the pool may run many calls)."""
        self.stats = PoolStats()
        pending = deque((name, payload, 0) for name, payload in units)
        feeding = feed is not None

        def take(wait: bool) -> bool:
            """Move what the feed holds into ``pending``; False once it has said it is closed."""
            assert feed is not None
            try:
                item = feed.get(timeout=0.05) if wait else feed.get_nowait()
                while True:
                    if item is None:
                        return False
                    pending.append((item[0], item[1], 0))
                    item = feed.get_nowait()
            except queue.Empty:
                return True

        running: dict[ray.ObjectRef, tuple[int, str, Any, int, float]] = {}
        idle = deque(range(len(self.actors)))
        start = time.perf_counter()

        def dispatch() -> None:
            while pending and idle:
                slot = idle.popleft()
                name, payload, tries = pending.popleft()
                ref = getattr(self.actors[slot], method).remote(payload)
                running[ref] = (slot, name, payload, tries, time.perf_counter())

        while pending or running or feeding:
            if feeding:
                feeding = take(wait=not pending and not running)
            dispatch()
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.05 if feeding else None)
            if not ready:
                continue
            ref = ready[0]
            slot, name, payload, tries, t0 = running.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as err:
                self.stats.actor_failures += 1
                # a unit sent to an actor that is still restarting never ran: it costs no retry
                lost = not isinstance(err, ray.exceptions.ActorUnavailableError)
                if lost and tries >= self.max_unit_retries:
                    raise RuntimeError(
                        f"{self.name}: unit {name} lost {tries + 1} times with its actor; giving up ({err})"
                    ) from err
                log.warning(
                    "%s: actor %d failed during unit %s (%s); the unit goes back in the queue",
                    self.name,
                    slot,
                    name,
                    type(err).__name__,
                )
                self.stats.retried += 1
                pending.appendleft((name, payload, tries + int(lost)))
                self._recover(slot)
                idle.append(slot)
                continue
            self.stats.busy_seconds.append(time.perf_counter() - t0)
            # the actor gets its next unit before the driver writes this one's file: it never waits on the disk
            idle.append(slot)
            dispatch()
            done(name, result)
            self.stats.units += 1
        self.stats.seconds += time.perf_counter() - start
        return self.stats

    def _recover(self, slot: int, timeout: float = 120.0) -> None:
        """Wait until Ray has restarted the actor of ``slot``; replace it when Ray gives up on it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ray.get(self.actors[slot].__ray_ready__.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)  # restarting
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                break  # out of restarts (or stuck): a fresh actor takes the slot
        log.warning("%s: actor %d did not come back; starting a new one", self.name, slot)
        ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._new()
        self.stats.replaced += 1

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
