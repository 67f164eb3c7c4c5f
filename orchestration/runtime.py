"""What a campaign runs on: every Ray call its stages need, behind a few calls (generate, score, describe,
train, shut down).

``CampaignRuntime`` is what the driver (``orchestration/campaign.py``) sees. ``RayRuntime`` is the real
one: the roles' reservations (decided once, for samplers, scorers and trainer together), the sampler and
scorer actor pools and the DPO trainer group (each started on first use and kept to the campaign's end),
the weight channel from the trainer to the samplers, and scoring alongside sampling. Its calls take and
return plain rows and write each finished work unit into the stage's folder (``work_units``), so a stage
interrupted anywhere resumes with the units it already has.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from base import atomic
from orchestration.work_units import run_units

if TYPE_CHECKING:
    from orchestration.config import ProjectConfig
    from orchestration.ray_train import SFTResult
    from orchestration.weights import WeightChannel

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]
Stats = dict[str, float]


@dataclass(frozen=True)
class PolicyRef:
    """A policy version (the round that made it; 0: the starting policy) and the folder it is saved in."""

    version: int
    path: str


@dataclass(frozen=True)
class Scorers:
    """What scorer actors load: the evaluator and, when the campaign has one, the independent judge."""

    evaluator_dir: str
    judge_dir: str | None


@dataclass(frozen=True)
class Scoring:
    """Where a stage's scores go and how they are read (``check_music21_reads``: also ask music21's reader)."""

    folder: Path
    scorers: Scorers
    check_music21_reads: bool


@dataclass(frozen=True)
class DPOJob:
    """One round of DPO: its pairs, the policy it starts from, where the new policy goes, its MLflow run."""

    round: int
    pairs_file: str
    out_dir: str
    start: PolicyRef
    reference_dir: str | None  # dpo.reference 'initial': the fixed reference; None: the start policy
    tracking_uri: str
    run_id: str | None


class CampaignRuntime(Protocol):
    def train_policy(self, config_name: str) -> SFTResult:
        """Supervised training of the starting policy (Ray Train)."""

    def generate(self, folder: Path, specs: Rows, policy: PolicyRef, alongside: Scoring | None) -> tuple[Rows, Stats]:
        """Samples of ``specs`` by ``policy``, unit by unit into ``folder/units``; ``alongside``: score each
        unit as it arrives (the score stage then finds those units done)."""

    def score(self, rows: Rows, scoring: Scoring) -> tuple[Rows, Stats]:
        """Score rows (id, prompt, seed, interleaved, finished) unit by unit into ``scoring.folder/units``."""

    def describe(self, folder: Path, rows: Rows, scorers: Scorers) -> tuple[Rows, Stats]:
        """The music statistics of real pieces (id, prompt, split, interleaved)."""

    def train(self, job: DPOJob) -> dict[str, Any]:
        """One round of DPO; the new policy is saved to ``job.out_dir/policy`` and becomes the samplers'
        policy ``job.round``. Returns the round's summary (numbers only)."""

    def carry_over(self, job: DPOJob) -> None:
        """Round ``job.round`` had nothing to learn from: its policy is the start policy, copied."""

    def shutdown(self) -> None: ...


def score_row(sample: dict) -> dict:
    """What a scorer needs of a sample."""
    return {k: sample.get(k) for k in ("id", "prompt", "seed", "interleaved", "finished")}


class RayRuntime:
    """A campaign's actors and trainer on Ray (a local Ray started here, or ``cluster.ray_address``)."""

    def __init__(self, project: ProjectConfig):
        self.project = project
        self.cfg = project.campaign
        self._reserved: dict[str, Any] = {}  # each role's reservation, decided at the first actor or trainer
        self._pools: dict[str, Any] = {}  # actor pools, kept from their first stage to the campaign's end
        self._scorers: Scorers | None = None  # what the scorer pool loaded
        self._trainer: Any = None  # the trainer group, kept from the first DPO stage to the campaign's end
        self._weights: tuple[int, Any] | None = None  # the newest published policy: (version, channel handle)
        self._channel: WeightChannel | None = None  # how published weights reach the samplers

    # ------------------------------------------------------------------ the calls a campaign makes

    def train_policy(self, config_name: str) -> SFTResult:
        from orchestration.ray_train import run_sft

        return run_sft(self.project, config_name)

    def generate(self, folder: Path, specs: Rows, policy: PolicyRef, alongside: Scoring | None) -> tuple[Rows, Stats]:
        handle: list = []  # the weights are found (or published) when a unit needs them, once per stage

        def payload(chunk: Rows) -> dict:
            if not handle:
                handle.append(self._policy_handle(policy))
            return {"policy": handle[0], "specs": chunk}

        scored: Stats = {}  # what scoring alongside did, known once it has stopped
        with self._scoring_alongside(alongside, scored) as on_unit:
            rows, stats = run_units(
                folder, specs, self.cfg.unit_size, "generate", lambda: self._pool("samplers"), payload, on_unit
            )
        return rows, {**stats, **{f"scored_alongside/{k}": v for k, v in scored.items()}}

    def score(self, rows: Rows, scoring: Scoring) -> tuple[Rows, Stats]:
        return run_units(
            scoring.folder,
            rows,
            self.cfg.unit_size,
            "score",
            lambda: self._pool("scorers", scoring.scorers),
            lambda chunk: {"rows": chunk, "check_music21_reads": scoring.check_music21_reads},
        )

    def describe(self, folder: Path, rows: Rows, scorers: Scorers) -> tuple[Rows, Stats]:
        return run_units(
            folder,
            rows,
            max(self.cfg.unit_size, 32),
            "describe",
            lambda: self._pool("scorers", scorers),
            lambda chunk: {"rows": chunk},
        )

    def train(self, job: DPOJob) -> dict[str, Any]:
        """The round on the trainer group, started again from the round's start policy when it is lost (up to
        ``campaign.max_restarts`` times); the new weights are published to the samplers."""
        from orchestration.dpo_worker import RoundJob
        from orchestration.trainer_group import TrainerLost
        from orchestration.weights import ObjectStoreChannel

        channel = self._weight_channel()
        pushes = not isinstance(channel, ObjectStoreChannel)
        round_job = RoundJob(job.round, job.pairs_file, job.out_dir, job.tracking_uri, job.run_id, keep_weights=pushes)
        restarts, started = 0, 0.0
        while True:
            if self._trainer is None:
                self._trainer = self._start_trainer(job)
                started += self._trainer.start_seconds
            try:
                summary, weights = self._trainer.train(round_job)
                break
            except TrainerLost as err:
                self._trainer = None
                restarts += 1
                if restarts > self.cfg.max_restarts:
                    raise RuntimeError(
                        f"round {job.round}: the trainer group was lost {restarts} times; giving up"
                    ) from err
                log.warning("round %d: %s; starting the trainer group again from the round's policy", job.round, err)
        self._weights = (job.round, channel.publish(weights, job.round))
        info = {key: v for key, v in summary.items() if isinstance(v, (int, float))}
        info.update(getattr(channel, "last", {}))  # a push's transport and seconds
        return {**info, "trainer/restarts": restarts, "trainer/start_seconds": started}

    def carry_over(self, job: DPOJob) -> None:
        import shutil

        def copy(tmp: Path) -> None:
            shutil.copytree(job.start.path, tmp, dirs_exist_ok=True)

        atomic.write_dir(Path(job.out_dir) / "policy", copy)
        self._stop_trainer()  # its engine no longer holds the newest version; started again when needed

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()
        self._stop_trainer()

    # ------------------------------------------------------------------ roles

    def _ray(self) -> None:
        """Ray, joined or started at the first call that needs it (a campaign whose stages are all done
        starts none)."""
        from orchestration.ray_runtime import ensure_ray

        ensure_ray(self.project.cluster.ray_address)

    def _reservation(self, role: str) -> Any:
        """What one actor of ``role`` reserves. Decided once, for samplers, scorers and trainer together, so
        that all three live for the whole campaign: scaled down to share the cores where the cluster cannot
        hold them all at once (``orchestration.placement``)."""
        if not self._reserved:
            import ray

            from orchestration.placement import Role, reservations
            from orchestration.ray_runtime import resolve_gpu

            self._ray()
            c, cluster = self.cfg, self.project.cluster
            gpu = 1.0 if resolve_gpu(cluster.use_gpu) else 0.0
            roles = [
                Role("samplers", c.num_samplers, c.cpus_per_sampler, c.gpus_per_sampler),
                Role("scorers", c.num_scorers, c.cpus_per_scorer, c.gpus_per_scorer),
                Role("trainer", cluster.num_workers, cluster.cpus_per_worker, gpu),
            ]
            total = ray.cluster_resources()
            self._reserved = reservations(roles, total.get("CPU", 0.0), total.get("GPU", 0.0))
            if any(r.colocated for r in self._reserved.values()):
                log.info(
                    "the cluster cannot hold every role at once: they share it in turn (%s)",
                    ", ".join(f"{n} {r.cpus:g} CPU {r.gpus:g} GPU each" for n, r in self._reserved.items()),
                )
        return self._reserved[role]

    def _pool(self, role: str, scorers: Scorers | None = None) -> Any:
        """The campaign's sampler or scorer pool: started on first use and kept to the campaign's end."""
        from orchestration.actors import ActorPool, Resources, SamplerActor, ScorerActor, ScorerSpec

        if role == "scorers" and scorers is not None:
            if self._scorers is not None and scorers != self._scorers:
                raise RuntimeError(f"the scorers hold {self._scorers}, not {scorers}: one evaluator per campaign")
            self._scorers = scorers
        if role not in self._pools:
            c, p = self.cfg, self.project
            r = self._reservation(role)
            actor: type
            args: tuple
            if role == "samplers":
                resources = Resources(r.cpus, r.gpus, threads=max(1, int(c.cpus_per_sampler)))
                actor, size, args = SamplerActor, c.num_samplers, (p.sampling, resources)
            else:
                if self._scorers is None:
                    raise RuntimeError("the scorer pool was asked for before the evaluator it loads was named")
                resources = Resources(r.cpus, r.gpus, threads=max(1, int(c.cpus_per_scorer)))
                s = self._scorers
                spec = ScorerSpec(s.evaluator_dir, p.evaluator, s.judge_dir, p.judge if s.judge_dir else None)
                actor, size, args = ScorerActor, c.num_scorers, (spec, resources)
            self._pools[role] = ActorPool(actor, size, args, resources, c.max_restarts, c.max_unit_retries, role)
        return self._pools[role]

    def _start_trainer(self, job: DPOJob) -> Any:
        """The trainer group, its engines built from the round's start policy (saved on disk)."""
        from orchestration.dpo_worker import TrainerSpec
        from orchestration.trainer_group import TrainerGroup

        spec = TrainerSpec(
            dpo=self.project.dpo,
            precision=self.project.cluster.precision,
            policy_dir=job.start.path,
            version=job.start.version,
            reference_dir=job.reference_dir,
        )
        cluster = self.project.cluster
        return TrainerGroup(spec, cluster.num_workers, self._reservation("trainer"), cluster.cpus_per_worker)

    def _stop_trainer(self) -> None:
        if self._trainer is not None:
            self._trainer.shutdown()
            self._trainer = None

    # ------------------------------------------------------------------ weights

    def _weight_channel(self) -> WeightChannel:
        """``campaign.weight_channel``: the object store, or a push from the trainer into the samplers (auto:
        where both hold GPUs, the host round-trip it saves is worth a group of their own)."""
        if self._channel is None:
            from orchestration.weight_sync import BroadcastChannel
            from orchestration.weights import ObjectStoreChannel

            setting = self.cfg.weight_channel
            gpus = self._reservation("samplers").gpus > 0 and self._reservation("trainer").gpus > 0
            if setting == "broadcast" or (setting == "auto" and gpus):
                self._channel = BroadcastChannel(
                    lambda: self._trainer.ranks[0] if self._trainer is not None else None,
                    lambda: list(self._pools["samplers"].actors) if "samplers" in self._pools else [],
                )
            else:
                self._channel = ObjectStoreChannel()
        return self._channel

    def _policy_handle(self, policy: PolicyRef) -> Any:
        """The samplers' handle on ``policy``: the trainer's copy, published when it trained it; read from
        disk only when this runtime has none (a resumed campaign, the starting policy)."""
        from orchestration.weights import ObjectStoreChannel, PolicyWeights

        if self._weights is None or self._weights[0] != policy.version:
            self._ray()
            weights = PolicyWeights.load(policy.path, policy.version)
            # through the object store: a policy read from disk has no trainer holding it to push it
            self._weights = (policy.version, ObjectStoreChannel().publish(weights, policy.version))
        return self._weights[1]

    @contextlib.contextmanager
    def _scoring_alongside(self, scoring: Scoring | None, stats: Stats) -> Iterator[Callable[[str, Rows], None] | None]:
        """While the block samples, score each sample unit as it arrives, into ``scoring.folder``'s units;
        yields the sampling's per-unit hook, or None where overlap saves nothing (``campaign.overlap_scoring``).
        Scoring that fails here only leaves its units to the score stage. ``stats`` gets what it did (units,
        actor failures and retried units: a scorer lost here is not the score stage's to count)."""
        if scoring is None or not self._overlap():
            yield None
            return
        pool = self._pool("scorers", scoring.scorers)
        feed: queue.Queue = queue.Queue()
        unit_dir = scoring.folder / "units"
        unit_dir.mkdir(parents=True, exist_ok=True)

        def write(name: str, rows: Rows) -> None:
            atomic.write_jsonl(unit_dir / f"{name}.jsonl", rows)

        def work() -> None:
            try:
                done = pool.run([], "score", write, feed)
                stats.update(
                    {"units": done.units, "actor_failures": done.actor_failures, "retried_units": done.retried}
                )
            except Exception as err:
                log.warning(
                    "scoring alongside sampling stopped (%s: %s); the score stage scores the rest",
                    type(err).__name__,
                    err,
                )

        def send(name: str, rows: Rows) -> None:
            feed.put((name, {"rows": [score_row(r) for r in rows], "check_music21_reads": scoring.check_music21_reads}))

        worker = threading.Thread(target=work, name="scoring-alongside", daemon=True)
        worker.start()
        try:
            yield send
        finally:
            feed.put(None)
            worker.join()

    def _overlap(self) -> bool:
        """Whether scoring runs alongside sampling: asked for, or (auto) where neither role shares cores."""
        setting = self.cfg.overlap_scoring
        if setting != "auto":
            return setting == "yes"
        return not (self._reservation("samplers").colocated or self._reservation("scorers").colocated)
