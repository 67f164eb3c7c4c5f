"""The CLaMP-DPO campaign driver: corpus → policy → evaluator (+ judge) → prompts → rounds.

``Campaign.run`` is the list of stages. Round k: sample candidates of the training prompts with policy
k−1 (sampler actors) → score them (scorer actors) → pairs → DPO (TRL + DeepSpeed on the trainer group) → policy
k → evaluate policy k on the held-out prompts. Round 0 only evaluates the starting policy. Every stage ends
with a marker (pipelines/campaign/state.py), so ``resume`` picks up where a crash left off.

The pure parts of each stage live beside it in pipelines/campaign/ (prompt plan and sample seeds, pair
records, round metrics, config identity, folder layout); this module wires them to Ray, DeepSpeed and
MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base import atomic
from base.typed_config import ConfigError, to_dict
from orchestration.config import ProjectConfig, campaign_config
from orchestration.work_units import run_units
from pipelines.campaign import identity, plan
from pipelines.campaign.compare import load_rounds
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout, round_name, stage_name
from pipelines.campaign.state import Markers, all_stages

if TYPE_CHECKING:
    from orchestration.weights import WeightChannel

log = logging.getLogger(__name__)


class Campaign:
    """One campaign folder: its config, its MLflow runs, and the stages that fill it."""

    def __init__(self, project: ProjectConfig, config_name: str = "", rebuild: bool = False):
        from base.tracking import tracking_uri
        from orchestration.campaign_tracking import CampaignTracker

        self.layout = Layout(Path(project.campaign.out_dir).resolve())
        root = self.layout.root
        # the stages' own output folders live inside the campaign folder
        project = replace(
            project,
            train=replace(project.train, out_dir=str(self.layout.stage_dir("train"))),
            evaluator=replace(project.evaluator, out_dir=str(self.layout.stage_dir("evaluator"))),
            judge=replace(project.judge, out_dir=str(self.layout.stage_dir("judge"))),
        )
        root.mkdir(parents=True, exist_ok=True)
        self.state = self._identity(to_dict(project), config_name)
        self.uri = tracking_uri(project.tracking.tracking_uri, root)
        self.project = replace(project, tracking=replace(project.tracking, tracking_uri=self.uri))
        self.cfg = self.project.campaign
        self.tracker = CampaignTracker(self.uri, self.project.tracking.experiment, root)
        if not self.state.get("parent_run_id"):
            self.state["parent_run_id"] = self.tracker.start_parent(
                f"campaign-{root.name}",
                to_dict(self.project),
                {"clampdpo.config": config_name, "clampdpo.dir": str(root)},
            )
        else:
            self.tracker.reopen(self.state["parent_run_id"])
        identity.write_state(root, self.state)
        self.parent: str = self.state["parent_run_id"]
        self.markers = Markers(root)
        # what the set-up stages find or make; filled in by run()
        self.corpus = Path()
        self.policy0 = ""
        self.evaluator_dir = ""
        self.judge_dir: str | None = None
        self.prompts = plan.Prompts([], [])
        self._pools: dict[str, Any] = {}  # actor pools, kept from their first stage to the campaign's end
        self._trainer: Any = None  # the trainer group, kept from the first DPO stage to the campaign's end
        self._reserved: dict[str, Any] = {}  # each role's reservation, decided once for all roles together
        self._weights: tuple[int, Any] | None = None  # the newest published policy: (version, channel handle)
        # how published weights reach the samplers (decided at the first publish)
        self._channel: WeightChannel | None = None
        self.rebuild = rebuild  # train the set-up stages again instead of taking them from campaign.cache_dir

    def _identity(self, config: dict[str, Any], config_name: str) -> dict[str, Any]:
        """The folder's saved state; a folder holding a campaign with another config is refused."""
        if not self.layout.state_file.is_file():
            return identity.new_state(config, config_name)
        saved = identity.read_state(self.layout.root)
        changed = identity.changed_sections(config, saved["config"])
        if changed:
            raise ConfigError(
                f"campaign.out_dir: {self.layout.root} holds a campaign with another config "
                f"(sections {', '.join(changed)} differ); resume it with `clampdpo campaign resume "
                f"{self.layout.root}` or choose another --out"
            )
        return saved

    # ------------------------------------------------------------------ the whole campaign

    def run(self) -> list[dict[str, float]]:
        """Every stage in order (finished ones skipped); returns the round table's rows."""
        from orchestration.ray_runtime import ensure_ray

        status = "FAILED"
        try:
            self.corpus = Path(self.stage("corpus", self.build_corpus)["corpus"])
            self.policy0 = self.stage("policy", self.train_policy)["policy"]
            self.evaluator_dir = self.stage("evaluator", self.train_evaluator, "evaluator")["dir"]
            self.judge_dir = self.stage("judge", self.train_judge)["dir"]
            self.stage("prompts", self.choose_prompts)
            self.prompts = plan.Prompts.from_dict(json.loads(self.layout.prompts_file.read_text()))
            ensure_ray(self.project.cluster.ray_address)
            self.stage("real", self.score_real)
            self.stage(stage_name(0, "eval"), self.evaluate, 0)
            for k in range(1, self.cfg.rounds + 1):
                self.stage(stage_name(k, "sample"), self.sample_candidates, k)
                self.stage(stage_name(k, "score"), self.score_candidates, k)
                self.stage(stage_name(k, "pairs"), self.make_pairs, k)
                self.stage(stage_name(k, "dpo"), self.train_dpo, k)
                self.stage(stage_name(k, "eval"), self.evaluate, k)
            status = "FINISHED"
        finally:
            self._stop_pools()
            self.tracker.finish(self.parent, status)
        return load_rounds(self.layout.root)

    def stage(self, name: str, fn: Callable[..., dict[str, Any] | None], *args: Any) -> dict[str, Any]:
        """Run a stage unless it finished and its outputs are still what its marker recorded.

        A stage that runs (first time, interrupted, or damaged) makes every later stage stale: their markers
        go, and the round outputs they made from this stage's old output are removed, so resume redoes
        exactly the damaged stage and everything downstream of it.
        """
        marker, problems = self.markers.check(name)
        if marker is not None:
            log.info("stage %s: done already", name)
            return marker
        if problems:
            log.warning("stage %s is damaged (%s): redoing it and every stage after it", name, "; ".join(problems))
            self.markers.clear([name])
        self._invalidate_after(name)
        log.info("stage %s ...", name)
        start = time.perf_counter()
        info = fn(*args) or {}
        info["seconds"] = time.perf_counter() - start
        self.markers.mark(name, info, self.layout.outputs(name, info))
        log.info("stage %s: done in %.1f s", name, info["seconds"])
        return self.markers.done(name) or info

    def _invalidate_after(self, name: str) -> None:
        stages = all_stages(self.cfg.rounds)
        later = stages[stages.index(name) + 1 :]
        removed = self.markers.clear(later)
        if removed:
            log.warning("stage %s runs again, so %d later stages will too (%s ...)", name, len(removed), removed[0])
            for stage in removed:
                for path in self.layout.made_here(stage):
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()

    # ------------------------------------------------------------------ set-up stages

    def build_corpus(self) -> dict[str, Any]:
        from pipelines.data.build import ensure_corpus

        return {"corpus": str(ensure_corpus(self.project.data).resolve())}

    def _cached(self, kind: str, config: dict[str, Any]) -> tuple[str, Path | None]:
        """The cache key of a set-up stage's result and its cached folder, if any (``campaign.cache_dir``)."""
        from pipelines.campaign.stage_cache import corpus_fingerprint, lookup, stage_key

        key = stage_key(kind, corpus_fingerprint(self.corpus), config)
        if not self.cfg.cache_dir or self.rebuild:
            return key, None
        hit = lookup(self.cfg.cache_dir, key)
        # absolute: training workers and actors run in folders of their own, where a relative path leads nowhere
        return key, hit.resolve() if hit is not None else None

    def train_policy(self) -> dict[str, Any]:
        if self.cfg.policy_from:
            from models.config import load_model

            load_model(self.cfg.policy_from)  # fail now, with the loader's message, not in an actor
            return {"policy": str(Path(self.cfg.policy_from).resolve()), "trained": False}
        p = self.project
        key, hit = self._cached(
            "policy",
            {"model": to_dict(p.model), "train": to_dict(p.train), "cluster": {"num_workers": p.cluster.num_workers}},
        )
        if hit is not None:
            log.info("policy: trained before on this corpus with this config (%s)", hit)
            return {
                "policy": str(hit / "model"),
                "trained": False,
                "cache": str(hit),
                **json.loads((hit / "cache.json").read_text())["metrics"],
            }
        from orchestration.ray_train import run_sft

        result = run_sft(self.project, self.state.get("config_name", ""))
        self.tracker.adopt(self.parent, result.run_id)
        metrics = {"eval/bpc": result.summary.get("eval/bpc"), "baseline/unigram_bpc": result.baseline_bpc}
        if self.cfg.cache_dir:
            from pipelines.campaign.stage_cache import store

            store(self.cfg.cache_dir, key, result.out_dir, ["model", "sft_summary.json"], {"metrics": metrics})
        return {"policy": str(Path(result.model_dir).resolve()), "trained": True, **metrics}

    def train_evaluator(self, section: str) -> dict[str, Any]:
        given = self.cfg.evaluator_from if section == "evaluator" else self.cfg.judge_from
        if given:
            from evaluators.evaluator import Evaluator

            Evaluator.load(given)  # fail now, with the loader's message
            return {"dir": str(Path(given).resolve()), "trained": False}
        cfg = getattr(self.project, section)
        key, hit = self._cached(section, to_dict(cfg))
        if hit is not None:
            log.info("%s: trained before on this corpus with this config (%s)", section, hit)
            return {
                "dir": str(hit),
                "trained": False,
                "cache": str(hit),
                **json.loads((hit / "report.json").read_text()),
            }
        from evaluators.train import train_evaluator

        result = train_evaluator(
            cfg,
            self.corpus,
            self.uri,
            self.project.tracking.experiment,
            {section: to_dict(cfg), "data": to_dict(self.project.data)},
        )
        self.tracker.adopt(self.parent, result.run_id)
        if self.cfg.cache_dir:
            from pipelines.campaign.stage_cache import store

            store(self.cfg.cache_dir, key, result.out_dir, ["model", "reference.npz", "report.json"], {})
        return {
            "dir": str(result.out_dir.resolve()),
            "trained": True,
            **{k: v for k, v in result.report.items() if isinstance(v, (int, float))},
        }

    def train_judge(self) -> dict[str, Any]:
        return self.train_evaluator("judge") if self.cfg.use_judge else {"dir": None}

    def choose_prompts(self) -> dict[str, Any]:
        from evaluators.evaluator import Reference

        scored = set(Reference.load(Path(self.evaluator_dir) / "reference.npz").prompts)
        prompts = plan.choose_prompts(plan.corpus_prompts(self.corpus), self.cfg, scored)
        atomic.write_json(self.layout.prompts_file, prompts.to_dict())
        return {"train": len(prompts.train), "heldout": len(prompts.heldout)}

    # ------------------------------------------------------------------ round stages

    def policy_dir(self, k: int) -> str:
        """The policy after round k (round 0: the starting policy)."""
        return self.policy0 if k == 0 else str(self.layout.trained_policy(k))

    def sample_candidates(self, k: int) -> dict[str, Any]:
        specs = plan.round_samples(self.prompts.train, k, self.cfg.samples_per_prompt, self.cfg.seed)
        with self._scoring_alongside(self.layout.scores(k), self.project.dpo.require_parse) as on_unit:
            return self._sample(specs, k - 1, self.layout.samples(k), on_unit)

    def score_candidates(self, k: int) -> dict[str, Any]:
        # the parse guard is an exclusion only when asked for: music21's ABC reader costs ~0.1 s a piece
        return self._score(self.layout.samples(k), self.layout.scores(k), music21_abc=self.project.dpo.require_parse)

    def make_pairs(self, k: int) -> dict[str, Any]:
        from pipelines.campaign.pairs import round_pairs
        from pipelines.dpo.dataset import write_pairs

        samples = {s["id"]: s for s in atomic.read_jsonl(self.layout.samples(k) / SAMPLES_FILE)}
        scores = atomic.read_jsonl(self.layout.scores(k) / SCORES_FILE)
        lines = {p.key: p.lines for p in self.prompts.train}
        real = atomic.read_jsonl(self.layout.real / SCORES_FILE)
        real_texts = None
        if self.project.dpo.chosen_like_real:  # only the styles of the real pieces need their texts
            real_texts = {r["id"]: r["interleaved"] for r in atomic.read_jsonl(self.layout.real / SAMPLES_FILE)}
        result = round_pairs(
            samples, scores, lines, self.project.dpo, k, real, real_texts, self._reward_reference(), self._real_music()
        )
        write_pairs(
            self.layout.pairs(k),
            result.records,
            {
                "round": k,
                "policy": self.policy_dir(k - 1),
                "evaluator": self.evaluator_dir,
                "select_portion": self.project.dpo.select_portion,
                "candidates": result.candidates,
                "excluded": result.excluded,
            },
        )
        return {
            "pairs/count": len(result.records),
            "candidates/excluded": result.excluded,
            "prompts_with_pairs": result.prompts,
            **result.metrics(),
            "pair_checks": result.checks,
            "dropped_prompts": result.dropped,
        }

    def _reward_reference(self) -> tuple[Any, list[str]] | None:
        """The evaluator's training pieces (features in the space score rows' features are in, prompts): what
        rewards other than NotaGen's centroid score measure candidates against (``dpo.reward``)."""
        from evaluators.evaluator import Reference

        dpo = self.project.dpo
        if dpo.reward == "centroid" and not dpo.reward_contrast:
            return None
        ref, _ = Reference.load(Path(self.evaluator_dir) / "reference.npz").scoring(
            self.project.evaluator.center_features
        )
        train = ref.select(("train",))
        return train.features, train.prompts

    def train_dpo(self, k: int) -> dict[str, Any]:
        from orchestration.dpo_worker import RoundJob
        from orchestration.trainer_group import TrainerLost
        from orchestration.weights import ObjectStoreChannel

        out = self.layout.dpo(k)
        pairs = (self.markers.done(stage_name(k, "pairs")) or {}).get("pairs/count", 0)
        if not pairs:  # nothing to learn from: the policy carries over unchanged
            log.warning("round %d: no pairs (every candidate excluded?); the policy is carried over", k)

            def copy(tmp: Path) -> None:
                shutil.copytree(self.policy_dir(k - 1), tmp, dirs_exist_ok=True)

            atomic.write_dir(out / "policy", copy)
            self._stop_trainer()  # its engine no longer holds the newest version; started again when needed
            return {"pairs/count": 0}
        channel = self._weight_channel()
        pushes = not isinstance(channel, ObjectStoreChannel)
        job = RoundJob(k, str(self.layout.pairs(k)), str(out), self.uri, self._child(k), keep_weights=pushes)
        restarts, started = 0, 0.0
        while True:
            if self._trainer is None:
                self._trainer = self._start_trainer(k - 1)
                started += self._trainer.start_seconds
            try:
                summary, weights = self._trainer.train(job)
                break
            except TrainerLost as err:
                self._trainer = None
                restarts += 1
                if restarts > self.cfg.max_restarts:
                    raise RuntimeError(f"round {k}: the trainer group was lost {restarts} times; giving up") from err
                log.warning("round %d: %s; starting the trainer group again from the round's policy", k, err)
        self._weights = (k, channel.publish(weights, k))
        info = {key: v for key, v in summary.items() if isinstance(v, (int, float))}
        info.update(getattr(channel, "last", {}))  # a push's transport and seconds
        return {**info, "trainer/restarts": restarts, "trainer/start_seconds": started}

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

    def _start_trainer(self, version: int) -> Any:
        """The trainer group, its engines built from the policy of round ``version`` (saved on disk)."""
        from orchestration.dpo_worker import TrainerSpec
        from orchestration.trainer_group import TrainerGroup

        dpo = self.project.dpo
        spec = TrainerSpec(
            dpo=dpo,
            precision=self.project.cluster.precision,
            policy_dir=self.policy_dir(version),
            version=version,
            reference_dir=self.policy0 if dpo.reference == "initial" else None,
        )
        cluster = self.project.cluster
        return TrainerGroup(spec, cluster.num_workers, self._reservation("trainer"), cluster.cpus_per_worker)

    def score_real(self) -> dict[str, Any]:
        """The real held-out pieces (the corpus's eval split) of every evaluated prompt, scored as samples are:
        the level a policy's samples are measured against, every round."""
        from base.corpus import split_rows

        keys = {p.key for p in self.prompts.heldout + self.evaluated_train}
        rows = [
            {
                "id": r["id"],
                "prompt": r["prompt"],
                "seed": None,
                "finished": True,
                "interleaved": (self.corpus / "interleaved" / f"{r['id']}.abc").read_text(encoding="utf-8"),
            }
            for r in split_rows(self.corpus, "eval")
            if r["prompt"] in keys
        ]
        atomic.write_jsonl(self.layout.real / SAMPLES_FILE, rows)
        scored = self._score(self.layout.real, self.layout.real, music21_abc=True)
        return {**scored, **self._describe_corpus()}

    def _describe_corpus(self) -> dict[str, Any]:
        """The music statistics of every corpus piece (both splits, every prompt) into ``real/corpus/``: what
        the round metrics and the pair checks measure samples against. Kept in ``campaign.cache_dir`` by the
        corpus's content, as the trained set-up stages are."""
        from base.corpus import split_rows
        from evaluators.music_stats import MUSIC_VERSION, SCALARS
        from pipelines.campaign.stage_cache import corpus_fingerprint, lookup, stage_key, store

        out = self.layout.real_music
        key = stage_key("music", corpus_fingerprint(self.corpus), {"version": MUSIC_VERSION, "scalars": list(SCALARS)})
        hit = lookup(self.cfg.cache_dir, key) if self.cfg.cache_dir and not self.rebuild else None
        if hit is not None:
            log.info("music statistics of the corpus: measured before on this corpus (%s)", hit)
            atomic.write_text(out, (hit / out.name).read_text(encoding="utf-8"))
            return {"corpus_pieces": len(atomic.read_jsonl(out)), "corpus_cache": str(hit)}
        rows = [
            {
                "id": r["id"],
                "prompt": r["prompt"],
                "split": split,
                "interleaved": (self.corpus / "interleaved" / f"{r['id']}.abc").read_text(encoding="utf-8"),
            }
            for split in ("train", "eval")
            for r in split_rows(self.corpus, split)
        ]
        described, stats = run_units(
            out.parent,
            rows,
            max(self.cfg.unit_size, 32),
            "describe",
            lambda: self._pool("scorers"),
            lambda chunk: {"rows": chunk},
        )
        atomic.write_jsonl(out, described)
        if self.cfg.cache_dir:
            store(self.cfg.cache_dir, key, out.parent, [out.name], {})
        return {"corpus_pieces": len(described), "corpus_actor_seconds": stats.get("actor_seconds", 0.0)}

    def _real_music(self) -> Any:
        """The corpus's music statistics (``RealMusic``); empty for a campaign made before they existed."""
        from pipelines.campaign.music_metrics import RealMusic

        return RealMusic(atomic.read_jsonl(self.layout.real_music))

    @property
    def evaluated_train(self) -> list[plan.PromptSpec]:
        """The training prompts every round is evaluated on (with seeds the candidates never use)."""
        return self.prompts.train if self.cfg.eval_train_prompts else []

    def evaluate(self, k: int) -> dict[str, Any]:
        """Sample the held-out and the training prompts with policy k (the same seeds every round), score
        them, and report the round against round 0 and the real pieces."""
        from evaluators.evaluator import Reference
        from pipelines.campaign.metrics import per_prompt, round_metrics, round_music, training_metrics

        specs = plan.eval_samples(
            self.prompts.heldout + self.evaluated_train, k, self.cfg.eval_samples_per_prompt, self.cfg.seed
        )
        t0 = time.perf_counter()
        with self._scoring_alongside(self.layout.eval_scores(k), True) as on_unit:
            sampled = self._sample(specs, k, self.layout.eval_samples(k), on_unit)
        t1 = time.perf_counter()
        scored = self._score(self.layout.eval_samples(k), self.layout.eval_scores(k), music21_abc=True)
        t2 = time.perf_counter()
        scores = atomic.read_jsonl(self.layout.eval_scores(k) / SCORES_FILE)
        round0 = atomic.read_jsonl(self.layout.eval_scores(0) / SCORES_FILE) if k > 0 else None
        reference, _ = Reference.load(Path(self.evaluator_dir) / "reference.npz").scoring(
            self.project.evaluator.center_features
        )
        groups = {"train": {p.key for p in self.evaluated_train}, "heldout": {p.key for p in self.prompts.heldout}}
        real = atomic.read_jsonl(self.layout.real / SCORES_FILE)
        metrics = round_metrics(scores, real, round0, groups, (reference.features, reference.prompts))
        music, per_prompt_music = round_music(scores, round0, groups, self._real_music())
        metrics.update(music)
        metrics["round"] = k
        if k > 0:
            metrics.update(
                training_metrics(
                    atomic.read_jsonl(self.layout.scores(k) / SCORES_FILE),
                    self.markers.done(stage_name(k, "pairs")) or {},
                    self.markers.done(stage_name(k, "dpo")) or {},
                )
            )
        atomic.write_json(
            self.layout.metrics(k),
            {
                "metrics": metrics,
                "per_prompt": per_prompt(scores),
                "per_prompt_judge": per_prompt(scores, "judge_score"),
                "per_prompt_music": per_prompt_music,
            },
        )
        artifacts = self._report_round(k, metrics, scores)
        return {
            "artifacts_seconds": artifacts,
            "sample_seconds": t1 - t0,
            "score_seconds": t2 - t1,
            "sample_actor_seconds": sampled.get("actor_seconds", 0.0),
            "score_actor_seconds": scored.get("actor_seconds", 0.0),
        }

    # ------------------------------------------------------------------ actors

    def _reservation(self, role: str) -> Any:
        """What one actor of ``role`` reserves. Decided once, for samplers, scorers and trainer together, so
        that all three live for the whole campaign: scaled down to share the cores where the cluster cannot
        hold them all at once (``orchestration.placement``)."""
        if not self._reserved:
            import ray

            from orchestration.placement import Role, reservations
            from orchestration.ray_runtime import resolve_gpu

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

    def _pool(self, role: str) -> Any:
        """The campaign's sampler or scorer pool: started on first use and kept to the campaign's end."""
        from orchestration.actors import ActorPool, Resources, SamplerActor, ScorerActor, ScorerSpec

        if role not in self._pools:
            c = self.cfg
            r = self._reservation(role)
            actor: type
            args: tuple
            if role == "samplers":
                resources = Resources(r.cpus, r.gpus, threads=max(1, int(c.cpus_per_sampler)))
                actor, size, args = SamplerActor, c.num_samplers, (self.project.sampling, resources)
            else:
                resources = Resources(r.cpus, r.gpus, threads=max(1, int(c.cpus_per_scorer)))
                spec = ScorerSpec(
                    self.evaluator_dir,
                    self.project.evaluator,
                    self.judge_dir,
                    self.project.judge if self.judge_dir else None,
                )
                actor, size, args = ScorerActor, c.num_scorers, (spec, resources)
            self._pools[role] = ActorPool(actor, size, args, resources, c.max_restarts, c.max_unit_retries, role)
        return self._pools[role]

    def _stop_trainer(self) -> None:
        if self._trainer is not None:
            self._trainer.shutdown()
            self._trainer = None

    def _stop_pools(self) -> None:
        for pool in self._pools.values():
            pool.shutdown()
        self._pools.clear()
        self._stop_trainer()

    @contextlib.contextmanager
    def _scoring_alongside(self, folder: Path, music21_abc: bool) -> Iterator[Callable[[str, list[dict]], None] | None]:
        """While the block samples, score each sample unit as it arrives, into ``folder``'s units (the score
        stage then finds them done); yields the sampling's per-unit hook, or None where overlap saves nothing
        (``campaign.overlap_scoring``). Scoring that fails here only leaves its units to the score stage."""
        if not self._overlap():
            yield None
            return
        pool = self._pool("scorers")
        feed: queue.Queue = queue.Queue()
        unit_dir = folder / "units"
        unit_dir.mkdir(parents=True, exist_ok=True)

        def write(name: str, rows: list[dict]) -> None:
            atomic.write_jsonl(unit_dir / f"{name}.jsonl", rows)

        def work() -> None:
            try:
                pool.run([], "score", write, feed)
            except Exception as err:
                log.warning(
                    "scoring alongside sampling stopped (%s: %s); the score stage scores the rest",
                    type(err).__name__,
                    err,
                )

        def send(name: str, rows: list[dict]) -> None:
            feed.put((name, {"rows": [_score_row(r) for r in rows], "music21_abc": music21_abc}))

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

    def _sample(
        self,
        specs: list[plan.SampleSpec],
        version: int,
        folder: Path,
        on_unit: Callable[[str, list[dict]], None] | None = None,
    ) -> dict[str, Any]:
        """Generate ``specs`` with the policy of round ``version`` (0: the starting policy); ``on_unit`` hears
        of each unit generated here."""
        handle: list = []  # the weights are found (or published) when a unit needs them, once per stage

        def payload(chunk: list[dict]) -> dict:
            if not handle:
                handle.append(self._policy_handle(version))
            return {"policy": handle[0], "specs": chunk}

        rows, stats = run_units(
            folder,
            [s.to_dict() for s in specs],
            self.cfg.unit_size,
            "generate",
            lambda: self._pool("samplers"),
            payload,
            on_unit,
        )
        atomic.write_jsonl(folder / SAMPLES_FILE, rows)
        return {"samples": len(rows), **stats}

    def _score(self, samples: Path, folder: Path, music21_abc: bool = False) -> dict[str, Any]:
        rows = [_score_row(s) for s in atomic.read_jsonl(samples / SAMPLES_FILE)]
        scored, stats = run_units(
            folder,
            rows,
            self.cfg.unit_size,
            "score",
            lambda: self._pool("scorers"),
            lambda chunk: {"rows": chunk, "music21_abc": music21_abc},
        )
        atomic.write_jsonl(folder / SCORES_FILE, scored)
        return {"scored": len(scored), **stats}

    def _policy_handle(self, version: int) -> Any:
        """The samplers' handle on policy ``version``: the trainer's copy, published when it trained it; read
        from disk only when this driver has none (a resumed campaign, the starting policy)."""
        from orchestration.weights import ObjectStoreChannel, PolicyWeights

        if self._weights is None or self._weights[0] != version:
            weights = PolicyWeights.load(self.policy_dir(version), version)
            # through the object store: a policy read from disk has no trainer holding it to push it
            self._weights = (version, ObjectStoreChannel().publish(weights, version))
        return self._weights[1]

    # ------------------------------------------------------------------ tracking

    def _write_report(self) -> Path | None:
        """The campaign's HTML report so far (report.html); a report that cannot be built never stops a round."""
        from pipelines.campaign.report import build_report

        try:
            return build_report([self.layout.root])
        except Exception as err:
            log.warning("report.html not written: %s: %s", type(err).__name__, err)
            return None

    def _child(self, k: int) -> str:
        """Round k's MLflow child run (created once, its id kept in the round folder)."""
        f = self.layout.run_file(k)
        if f.is_file():
            return json.loads(f.read_text())["run_id"]
        run_id = self.tracker.start_child(self.parent, round_name(k), {"clampdpo.round": str(k)})
        atomic.write_json(f, {"run_id": run_id})
        return run_id

    def _report_round(self, k: int, metrics: dict[str, float], heldout_scores: list[dict]) -> float:
        """Round k's artifacts (best and worst pieces as MIDI, score histogram, the HTML report) and its
        MLflow records; returns the seconds the artifacts took (bench/round.py shows them apart)."""
        from pipelines.campaign.artifacts import best_and_worst, score_histogram

        start = time.perf_counter()
        child = self._child(k)
        art = self.layout.artifacts(k)
        series = {"held-out": [s["clamp_score"] for s in heldout_scores]}
        samples = {s["id"]: s for s in atomic.read_jsonl(self.layout.eval_samples(k) / SAMPLES_FILE)}
        if k > 0:
            cand = atomic.read_jsonl(self.layout.scores(k) / SCORES_FILE)
            series["candidates"] = [s["clamp_score"] for s in cand]
            samples.update({s["id"]: s for s in atomic.read_jsonl(self.layout.samples(k) / SAMPLES_FILE)})
            best_and_worst(samples, cand, art / "candidates", self.cfg.best_worst_per_prompt)
        best_and_worst(samples, heldout_scores, art / "heldout", self.cfg.best_worst_per_prompt)
        score_histogram(series, art / "clamp_scores.png", f"round {k}")
        report = self._write_report()
        artifacts = time.perf_counter() - start
        t = self.tracker
        t.log_metrics(child, metrics, k)
        t.log_metrics(self.parent, metrics, k)
        t.log_artifact(child, self.layout.metrics(k))
        t.log_artifact(child, art, "artifacts")
        if self.layout.pairs(k).is_file():
            t.log_artifact(child, self.layout.pairs(k), "pairs")
        if report is not None:
            t.log_artifact(child, report)
        rounds = self.state.setdefault("registered", {})
        if str(k) not in rounds:  # a resumed eval stage does not register the same policy twice
            version = t.register_policy(child, Path(self.policy_dir(k)), k)
            rounds[str(k)] = {"version": version, "rank": best_metric(metrics)}
            identity.write_state(self.layout.root, self.state)

        def rank(r: dict) -> float:
            value = r.get("rank", r.get("judge/mean", math.nan))  # "judge/mean": a campaign registered before
            return -math.inf if value is None or math.isnan(value) else value

        best = max(rounds.values(), key=rank)
        t.set_best(best["version"])
        t.finish(child)
        return artifacts


def _score_row(sample: dict) -> dict:
    """What a scorer needs of a sample."""
    return {k: sample.get(k) for k in ("id", "prompt", "seed", "interleaved", "finished")}


def best_metric(metrics: dict[str, float]) -> float:
    """What the ``best`` alias of the policy registry ranks rounds by, never the reward: the music statistics'
    similarity to the real pieces on the training prompts (on the held-out prompts when training prompts are
    not evaluated); the independent judge's mean where no statistics were measured."""
    for name in (
        "train/music/similarity/mean",
        "heldout/music/similarity/mean",
        "train/judge/mean",
        "heldout/judge/mean",
    ):
        value = metrics.get(name)
        if value is not None and not math.isnan(value):
            return value
    return math.nan


def run_campaign(
    project: ProjectConfig, config_name: str = "", rebuild: bool = False, command: str = "campaign run"
) -> tuple[Path, list[dict[str, float]]]:
    """Run (or continue) the campaign of ``project``; its folder is held for this process from before anything
    in it is read or written (``FolderLock``: a second writer is refused, naming the first)."""
    from base.folder_lock import FolderLock

    with FolderLock(Path(project.campaign.out_dir).resolve(), command):
        campaign = Campaign(project, config_name, rebuild)
        return campaign.layout.root, campaign.run()


def resume_campaign(out_dir: str | Path, ray_address: str | None = None) -> tuple[Path, list[dict[str, float]]]:
    """Continue a campaign from its own saved config (optionally on another Ray cluster)."""
    project, name = campaign_config(out_dir)
    if ray_address:
        project = replace(project, cluster=replace(project.cluster, ray_address=ray_address))
    project = replace(project, campaign=replace(project.campaign, out_dir=str(Path(out_dir).resolve())))
    return run_campaign(project, name, command="campaign resume")
