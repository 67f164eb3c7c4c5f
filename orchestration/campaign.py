"""The CLaMP-DPO campaign driver: corpus → policy → evaluator (+ judge) → prompts → rounds.

Round k: sample candidates of the training prompts with policy k−1 (sampler actors) → score them
(evaluator actors) → pairs → DPO (TRL on Ray Train + DeepSpeed) → policy k → evaluate policy k on the
held-out prompts. Round 0 only evaluates the starting policy. Every stage ends with a marker
(pipelines/campaign/state.py), so ``resume`` picks up where a crash left off.

Folder layout (``campaign.out_dir``)::

    campaign.json  markers/  prompts.json  mlflow.db  mlartifacts/
    sft/ evaluator/ judge/                      (when trained here)
    round-NN/samples/ scores/ pairs.jsonl dpo/policy/ eval/ metrics.json artifacts/ run.json
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import atomic
from pipelines.campaign import plan
from pipelines.campaign.compare import load_rounds
from pipelines.campaign.metrics import format_table, per_prompt, score_metrics
from pipelines.campaign.state import Markers
from pipelines.config import ProjectConfig
from pipelines.typed_config import ConfigError, from_dict, to_dict

log = logging.getLogger(__name__)

CAMPAIGN_FILE = "campaign.json"


def load_campaign_config(out_dir: str | Path) -> tuple[ProjectConfig, str]:
    """The config a campaign folder was started with (``resume`` and ``status`` read it)."""
    f = Path(out_dir) / CAMPAIGN_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{out_dir}: not a campaign folder (no {CAMPAIGN_FILE}); "
                                "start one with `clampdpo campaign run`")
    data = json.loads(f.read_text())
    return from_dict(ProjectConfig, data["config"]), data.get("config_name", "")


class Campaign:
    def __init__(self, project: ProjectConfig, config_name: str = ""):
        self.out = Path(project.campaign.out_dir).resolve()
        c = project.campaign
        # the stages' own output folders live inside the campaign folder
        project = replace(project,
                          train=replace(project.train, out_dir=str(self.out / "sft")),
                          evaluator=replace(project.evaluator, out_dir=str(self.out / "evaluator")),
                          judge=replace(project.judge, out_dir=str(self.out / "judge")))
        self.project, self.cfg, self.config_name = project, c, config_name
        self.markers = Markers(self.out)
        self.timings: dict[str, dict[str, float]] = {}

    # ------------------------------------------------------------------ set-up

    def _open(self) -> None:
        from orchestration.campaign_tracking import CampaignTracker
        from orchestration.tracking import tracking_uri

        self.out.mkdir(parents=True, exist_ok=True)
        f = self.out / CAMPAIGN_FILE
        config = to_dict(self.project)
        if f.is_file():
            saved = json.loads(f.read_text())
            mine, theirs = _comparable(config), _comparable(saved["config"])
            if mine != theirs:
                changed = sorted(k for k in mine if mine[k] != theirs.get(k))
                raise ConfigError(f"campaign.out_dir: {self.out} holds a campaign with another config (sections "
                                  f"{', '.join(changed)} differ); resume it with `clampdpo campaign resume "
                                  f"{self.out}` or choose another --out")
            self.state = saved
        else:
            self.state = {"config": config, "config_name": self.config_name, "created": time.time()}
        self.uri = tracking_uri(self.project.tracking.tracking_uri, self.out)
        self.project = replace(self.project, tracking=replace(self.project.tracking, tracking_uri=self.uri))
        self.tracker = CampaignTracker(self.uri, self.project.tracking.experiment, self.out)
        if not self.state.get("parent_run_id"):
            self.state["parent_run_id"] = self.tracker.start_parent(
                f"campaign-{self.out.name}", to_dict(self.project),
                {"clampdpo.config": self.config_name, "clampdpo.dir": str(self.out)})
        else:
            self.tracker.reopen(self.state["parent_run_id"])
        atomic.write_json(f, self.state)
        self.parent = self.state["parent_run_id"]

    def _stage(self, name: str, fn, *args) -> dict[str, Any]:
        """Run a stage unless its marker exists; the marker records the stage's info and wall time."""
        done = self.markers.done(name)
        if done is not None:
            log.info("stage %s: done already", name)
            return done
        log.info("stage %s ...", name)
        start = time.perf_counter()
        info = fn(*args) or {}
        info["seconds"] = time.perf_counter() - start
        self.markers.mark(name, info)
        log.info("stage %s: done in %.1f s", name, info["seconds"])
        return self.markers.done(name)

    def _corpus(self) -> dict:
        from pipelines.data.build import ensure_corpus

        return {"corpus": str(ensure_corpus(self.project.data).resolve())}

    def _policy(self) -> dict:
        if self.cfg.policy_from:
            from models.config import load_model

            load_model(self.cfg.policy_from)  # fail now, with the loader's message, not in an actor
            return {"policy": str(Path(self.cfg.policy_from).resolve()), "trained": False}
        from orchestration.ray_train import run_sft

        result = run_sft(self.project, self.config_name)
        self.tracker.adopt(self.parent, result.run_id)
        return {"policy": str(result.model_dir), "trained": True, "eval/bpc": result.summary.get("eval/bpc"),
                "baseline/unigram_bpc": result.baseline_bpc}

    def _evaluator(self, section: str, given: str | None) -> dict:
        if given:
            from evaluators.evaluator import Evaluator

            Evaluator.load(given)
            return {"dir": str(Path(given).resolve()), "trained": False}
        from evaluators.train import train_evaluator

        cfg = getattr(self.project, section)
        result = train_evaluator(cfg, self.corpus, self.uri, self.project.tracking.experiment,
                                 {section: to_dict(cfg), "data": to_dict(self.project.data)})
        self.tracker.adopt(self.parent, result.run_id)
        return {"dir": str(result.out_dir.resolve()), "trained": True,
                **{k: v for k, v in result.report.items() if isinstance(v, (int, float))}}

    def _judge(self) -> dict:
        if not self.cfg.use_judge:
            return {"dir": None}
        return self._evaluator("judge", self.cfg.judge_from)

    def _prompts(self) -> dict:
        from evaluators.evaluator import Reference

        scored = set(Reference.load(Path(self.evaluator_dir) / "reference.npz").prompts)
        prompts = plan.choose_prompts(plan.corpus_prompts(self.corpus), self.cfg, scored)
        atomic.write_json(self.out / "prompts.json", prompts.to_dict())
        return {"train": len(prompts.train), "heldout": len(prompts.heldout)}

    # ------------------------------------------------------------------ actors

    def _publish(self, policy_dir: str):
        """The policy's weights in the object store: loaded once per round, shared by every sampler."""
        import ray

        from models.config import load_model

        model = load_model(policy_dir)
        return ray.put({"config": model.config.to_dict(), "state_dict": model.state_dict()})

    def _run_units(self, folder: Path, items: list, kind: str, make_pool, wrap=None) -> tuple[list[dict], dict]:
        """Run the units of ``items`` that have no file in ``folder/units`` yet, then merge all units."""
        c = self.cfg
        chunks = [items[i:i + c.unit_size] for i in range(0, len(items), c.unit_size)]
        names = [f"unit-{i:04d}" for i in range(len(chunks))]
        unit_dir = folder / "units"
        unit_dir.mkdir(parents=True, exist_ok=True)
        todo = [(n, ch) for n, ch in zip(names, chunks) if not (unit_dir / f"{n}.jsonl").is_file()]
        if wrap:
            todo = [(n, wrap(ch)) for n, ch in todo]
        stats: dict[str, float] = {"units": len(chunks), "units_run": len(todo)}
        if todo:
            from tqdm import tqdm

            pool = make_pool(len(todo))
            bar = tqdm(total=len(todo), desc=kind, unit="unit", mininterval=2)

            def done(name: str, rows: list[dict]) -> None:
                atomic.write_jsonl(unit_dir / f"{name}.jsonl", rows)
                bar.update(1)

            try:
                s = pool.run(todo, kind, done)
            finally:
                bar.close()
                pool.shutdown()
            stats.update({"actor_seconds": sum(s.busy_seconds), "pool_seconds": s.seconds,
                          "retried_units": s.retried, "actor_failures": s.actor_failures})
        rows = [r for n in names for r in atomic.read_jsonl(unit_dir / f"{n}.jsonl")]
        return rows, stats

    def _sampler_pool(self, n: int):
        from orchestration.actors import ActorPool, SamplerActor

        c = self.cfg
        return ActorPool(SamplerActor, min(c.num_samplers, n),
                         (to_dict(self.project.sampling), c.cpus_per_sampler, c.gpus_per_sampler),
                         c.cpus_per_sampler, c.gpus_per_sampler, c.max_restarts, c.max_unit_retries, "samplers")

    def _scorer_pool(self, n: int):
        from orchestration.actors import ActorPool, ScorerActor

        c = self.cfg
        return ActorPool(ScorerActor, min(c.num_scorers, n),
                         (self.evaluator_dir, self.judge_dir, c.cpus_per_scorer, c.gpus_per_scorer,
                          self.project.evaluator.feature_batch_size, self.project.evaluator.plagiarism_cosine,
                          self.project.evaluator.center_features, self.project.judge.center_features),
                         c.cpus_per_scorer, c.gpus_per_scorer, c.max_restarts, c.max_unit_retries, "evaluators")

    def sample(self, specs: list[plan.SampleSpec], policy_dir: str, folder: Path) -> dict:
        weights: list = []  # published when a unit needs them, once per round

        def unit(chunk: list[dict]) -> dict:
            if not weights:
                weights.append(self._publish(policy_dir))
            return {"policy": weights, "specs": chunk}

        rows, stats = self._run_units(folder, [s.to_dict() for s in specs], "generate", self._sampler_pool,
                                      wrap=unit)
        atomic.write_jsonl(folder / "samples.jsonl", rows)
        return {"samples": len(rows), **stats}

    def score(self, folder: Path, out: Path) -> dict:
        samples = atomic.read_jsonl(folder / "samples.jsonl")
        slim = [{k: s[k] for k in ("id", "prompt", "interleaved", "finished")} for s in samples]
        rows, stats = self._run_units(out, slim, "score", self._scorer_pool)
        atomic.write_jsonl(out / "scores.jsonl", rows)
        return {"scored": len(rows), **stats}

    # ------------------------------------------------------------------ round stages

    def _round_dir(self, k: int) -> Path:
        return self.out / f"round-{k:02d}"

    def policy_dir(self, k: int) -> str:
        return self.policy0 if k == 0 else str(self._round_dir(k) / "dpo" / "policy")

    def _pairs(self, k: int) -> dict:
        from pipelines.dpo.dataset import PairRecord, write_pairs
        from pipelines.dpo.pairs import Candidate, build_pairs

        d = self._round_dir(k)
        samples = {s["id"]: s for s in atomic.read_jsonl(d / "samples" / "samples.jsonl")}
        scores = atomic.read_jsonl(d / "scores" / "scores.jsonl")
        candidates = [Candidate(s["id"], s["prompt"], s["clamp_score"], valid=bool(s["valid"]) and s["finished"],
                                plagiarism=bool(s["plagiarism"]), staves_grouped=bool(s["staves_grouped"]))
                      for s in scores]
        pairs = build_pairs(candidates, self.project.dpo.select_portion, self.project.dpo.max_pairs_per_prompt,
                            self.project.dpo.seed + k)
        records = []
        for p in pairs:
            c, r = samples[p.chosen], samples[p.rejected]
            prompt_text = "".join(c["text"].splitlines(keepends=True)[:3])
            records.append(PairRecord(k, p.prompt, prompt_text, p.chosen, p.rejected, c["text"][len(prompt_text):],
                                      r["text"][len(prompt_text):], p.chosen_score, p.rejected_score,
                                      c["seed"], r["seed"]))
        excluded = sum(1 for c in candidates if c.excluded)
        write_pairs(d / "pairs.jsonl", records,
                    {"round": k, "policy": self.policy_dir(k - 1), "evaluator": self.evaluator_dir,
                     "select_portion": self.project.dpo.select_portion, "candidates": len(candidates),
                     "excluded": excluded})
        return {"pairs/count": len(records), "candidates/excluded": excluded,
                "prompts_with_pairs": len({p.prompt for p in pairs})}

    def _dpo(self, k: int) -> dict:
        from ray.train import RunConfig
        from ray.train.torch import TorchTrainer

        from orchestration.dpo_worker import dpo_worker
        from orchestration.ray_train import scaling

        d = self._round_dir(k)
        out = d / "dpo"
        pairs = sum(1 for _ in open(d / "pairs.jsonl")) - 1
        if pairs == 0:  # nothing to learn from: the policy carries over unchanged
            log.warning("round %d: no pairs (every candidate excluded?); the policy is carried over", k)
            atomic.write_dir(out / "policy", lambda tmp: shutil.copytree(self.policy_dir(k - 1), tmp,
                                                                         dirs_exist_ok=True))
            return {"pairs/count": 0}
        reference = self.policy0 if self.project.dpo.reference == "initial" else None
        payload = {"project": to_dict(self.project), "round": k, "out_dir": str(out),
                   "pairs_file": str(d / "pairs.jsonl"), "policy_dir": self.policy_dir(k - 1),
                   "reference_dir": reference, "tracking_uri": self.uri, "run_id": self._child(k)}
        trainer = TorchTrainer(dpo_worker, train_loop_config=payload, scaling_config=scaling(self.project),
                               run_config=RunConfig(name=f"dpo-round-{k:02d}", storage_path=str(self.out / "ray")))
        trainer.fit()
        summary = json.loads((out / "dpo_summary.json").read_text())
        return {k2: v for k2, v in summary.items() if isinstance(v, (int, float))}

    def _eval(self, k: int) -> dict:
        d = self._round_dir(k)
        specs = plan.eval_samples(self.prompts.heldout, k, self.cfg.eval_samples_per_prompt, self.cfg.seed)
        t0 = time.perf_counter()
        sampled = self.sample(specs, self.policy_dir(k), d / "eval" / "samples")
        t1 = time.perf_counter()
        scored = self.score(d / "eval" / "samples", d / "eval" / "scores")
        t2 = time.perf_counter()
        scores = atomic.read_jsonl(d / "eval" / "scores" / "scores.jsonl")
        metrics = score_metrics(scores)
        # diversity and FMD need only the reference features: no evaluator model, no actor
        from evaluators.evaluator import Reference
        from evaluators.guards import set_metrics

        reference = Reference.load(Path(self.evaluator_dir) / "reference.npz")
        if self.project.evaluator.center_features:  # sample features were centred the same way
            reference, _ = reference.centred()
        metrics.update(set_metrics(np.array([s["feature"] for s in scores], dtype=np.float32),
                                   [s["prompt"] for s in scores], reference.features, reference.prompts))
        metrics["round"] = k
        if k > 0:
            metrics.update(self._round_training_metrics(k))
        atomic.write_json(d / "metrics.json", {"metrics": metrics, "per_prompt": per_prompt(scores),
                                               "per_prompt_judge": per_prompt(scores, "judge_score")})
        self._report_round(k, metrics, scores)
        return {"clamp/mean": metrics["clamp/mean"], "sample_seconds": t1 - t0, "score_seconds": t2 - t1,
                "sample_actor_seconds": sampled.get("actor_seconds", 0.0),
                "score_actor_seconds": scored.get("actor_seconds", 0.0)}

    def _round_training_metrics(self, k: int) -> dict[str, float]:
        out: dict[str, float] = {}
        cand = atomic.read_jsonl(self._round_dir(k) / "scores" / "scores.jsonl")
        out.update({f"candidates/{k2.split('/')[1]}": v for k2, v in score_metrics(cand, "clamp").items()
                    if k2.startswith("clamp/")})
        out["candidates/validity_rate"] = sum(bool(s["valid"]) for s in cand) / max(1, len(cand))
        pairs = self.markers.done(f"round-{k:02d}/pairs") or {}
        dpo = self.markers.done(f"round-{k:02d}/dpo") or {}
        out["pairs/count"] = float(pairs.get("pairs/count", 0))
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "train_loss",
                    "dpop/penalty", "logps/chosen", "logps/rejected"):
            if key in dpo:
                out[key if key != "train_loss" else "dpo/loss"] = float(dpo[key])
        return out

    # ------------------------------------------------------------------ tracking

    def _child(self, k: int) -> str:
        f = self._round_dir(k) / "run.json"
        if f.is_file():
            return json.loads(f.read_text())["run_id"]
        run_id = self.tracker.start_child(self.parent, f"round-{k:02d}", {"clampdpo.round": str(k)})
        atomic.write_json(f, {"run_id": run_id})
        return run_id

    def _report_round(self, k: int, metrics: dict[str, float], heldout_scores: list[dict]) -> None:
        from pipelines.campaign.artifacts import best_and_worst, score_histogram

        d = self._round_dir(k)
        child = self._child(k)
        art = d / "artifacts"
        series = {"held-out": [s["clamp_score"] for s in heldout_scores]}
        samples = {s["id"]: s for s in atomic.read_jsonl(d / "eval" / "samples" / "samples.jsonl")}
        if k > 0:
            cand = atomic.read_jsonl(d / "scores" / "scores.jsonl")
            series["candidates"] = [s["clamp_score"] for s in cand]
            samples.update({s["id"]: s for s in atomic.read_jsonl(d / "samples" / "samples.jsonl")})
            best_and_worst(samples, cand, art / "candidates", self.cfg.best_worst_per_prompt)
        best_and_worst(samples, heldout_scores, art / "heldout", self.cfg.best_worst_per_prompt)
        score_histogram(series, art / "clamp_scores.png", f"round {k}")
        t = self.tracker
        t.log_metrics(child, metrics, k)
        t.log_metrics(self.parent, metrics, k)
        t.log_artifact(child, d / "metrics.json")
        t.log_artifact(child, art, "artifacts")
        if (d / "pairs.jsonl").is_file():
            t.log_artifact(child, d / "pairs.jsonl", "pairs")
        rounds = self.state.setdefault("registered", {})
        if str(k) not in rounds:  # a resumed eval stage does not register the same policy twice
            version = t.register_policy(child, Path(self.policy_dir(k)), k)
            rounds[str(k)] = {"version": version, "clamp/mean": metrics["clamp/mean"]}
            atomic.write_json(self.out / CAMPAIGN_FILE, self.state)
        best = max(rounds.values(), key=lambda r: -math.inf if math.isnan(r["clamp/mean"]) else r["clamp/mean"])
        t.set_best(best["version"])
        t.finish(child)

    # ------------------------------------------------------------------ the whole campaign

    def run(self) -> list[dict[str, float]]:
        from orchestration.ray_train import ensure_ray

        self._open()
        status = "FAILED"
        try:
            self.corpus = Path(self._stage("corpus", self._corpus)["corpus"])
            self.policy0 = self._stage("policy", self._policy)["policy"]
            self.evaluator_dir = self._stage("evaluator", self._evaluator, "evaluator",
                                             self.cfg.evaluator_from)["dir"]
            self.judge_dir = self._stage("judge", self._judge)["dir"]
            self._stage("prompts", self._prompts)
            self.prompts = plan.Prompts.from_dict(json.loads((self.out / "prompts.json").read_text()))
            ensure_ray(self.project.cluster.ray_address)
            self._stage("round-00/eval", self._eval, 0)
            for k in range(1, self.cfg.rounds + 1):
                r = f"round-{k:02d}"
                d = self._round_dir(k)
                specs = plan.round_samples(self.prompts.train, k, self.cfg.samples_per_prompt, self.cfg.seed)
                self._stage(f"{r}/sample", self.sample, specs, self.policy_dir(k - 1), d / "samples")
                self._stage(f"{r}/score", self.score, d / "samples", d / "scores")
                self._stage(f"{r}/pairs", self._pairs, k)
                self._stage(f"{r}/dpo", self._dpo, k)
                self._stage(f"{r}/eval", self._eval, k)
            status = "FINISHED"
        finally:
            if hasattr(self, "tracker"):
                self.tracker.finish(self.parent, status)
        return load_rounds(self.out)


def _comparable(config: dict) -> dict:
    """A config without what may differ between a run and its resume (where it runs, where it lives)."""
    out = json.loads(json.dumps(config))
    out["cluster"].pop("ray_address", None)
    out["campaign"].pop("out_dir", None)
    for section in ("train", "evaluator", "judge"):
        out[section].pop("out_dir", None)
    out["tracking"].pop("tracking_uri", None)
    return out


def run_campaign(project: ProjectConfig, config_name: str = "") -> tuple[Path, list[dict[str, float]]]:
    campaign = Campaign(project, config_name)
    rows = campaign.run()
    return campaign.out, rows


def resume_campaign(out_dir: str | Path, ray_address: str | None = None) -> tuple[Path, list[dict[str, float]]]:
    project, name = load_campaign_config(out_dir)
    if ray_address:
        project = replace(project, cluster=replace(project.cluster, ray_address=ray_address))
    project = replace(project, campaign=replace(project.campaign, out_dir=str(Path(out_dir).resolve())))
    return run_campaign(project, name)


__all__ = ["Campaign", "run_campaign", "resume_campaign", "load_rounds", "format_table", "load_campaign_config"]
