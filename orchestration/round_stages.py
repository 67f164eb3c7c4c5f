"""The stages after set-up: the real pieces, and each round's sample → score → pairs → dpo → eval.

Round k samples candidates of the training prompts with policy k−1, scores them, makes chosen/rejected
pairs, trains policy k with DPO and evaluates it on the held-out (and training) prompts with the same seeds
every round. Every call to the actors and the trainer goes through the runtime (``orchestration.runtime``);
what happens to the rows between them is the pure code of ``pipelines/campaign``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base import atomic
from orchestration.runtime import DPOJob, PolicyRef, Scorers, Scoring, score_row
from pipelines.campaign import plan
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout, stage_name
from pipelines.campaign.state import Markers

if TYPE_CHECKING:
    from orchestration.config import ProjectConfig
    from orchestration.round_report import CampaignRecords
    from orchestration.runtime import CampaignRuntime
    from orchestration.setup_stages import Setup, SetupCache
    from pipelines.campaign.music_metrics import RealMusic

log = logging.getLogger(__name__)


class RoundStages:
    """The round stages of one campaign, over its set-up parts and its runtime."""

    def __init__(
        self,
        project: ProjectConfig,
        layout: Layout,
        setup: Setup,
        runtime: CampaignRuntime,
        records: CampaignRecords,
        cache: SetupCache,
    ):
        self.project, self.cfg, self.layout, self.setup = project, project.campaign, layout, setup
        self.runtime, self.records, self.cache = runtime, records, cache
        self.markers = Markers(layout.root)
        self.scorers = Scorers(setup.evaluator_dir, setup.judge_dir)

    def policy(self, k: int) -> PolicyRef:
        """The policy after round k (round 0: the starting policy)."""
        return PolicyRef(k, self.setup.policy if k == 0 else str(self.layout.trained_policy(k)))

    @property
    def evaluated_train(self) -> list[plan.PromptSpec]:
        """The training prompts every round is evaluated on (with seeds the candidates never use)."""
        return self.setup.prompts.train if self.cfg.eval_train_prompts else []

    # ------------------------------------------------------------------ the real pieces

    def score_real(self) -> dict[str, Any]:
        """The real held-out pieces (the corpus's eval split) of every evaluated prompt, scored as samples are:
        the level a policy's samples are measured against, every round."""
        from base.corpus import split_rows

        corpus = self.setup.corpus
        keys = {p.key for p in self.setup.prompts.heldout + self.evaluated_train}
        rows = [
            {
                "id": r["id"],
                "prompt": r["prompt"],
                "seed": None,
                "finished": True,
                "interleaved": (corpus / "interleaved" / f"{r['id']}.abc").read_text(encoding="utf-8"),
            }
            for r in split_rows(corpus, "eval")
            if r["prompt"] in keys
        ]
        atomic.write_jsonl(self.layout.real / SAMPLES_FILE, rows)
        scored = self._score(self.layout.real, self.layout.real, check_music21_reads=True)
        return {**scored, **self._describe_corpus()}

    def _describe_corpus(self) -> dict[str, Any]:
        """The music statistics of every corpus piece (both splits, every prompt) into ``real/corpus/``: what
        the round metrics and the pair checks measure samples against. Kept in ``campaign.cache_dir`` by the
        corpus's content, as the trained set-up stages are."""
        from base.corpus import split_rows
        from evaluators.music_stats import MUSIC_VERSION, SCALARS

        corpus, out = self.setup.corpus, self.layout.real_music
        key, hit = self.cache.find("music", corpus, {"version": MUSIC_VERSION, "scalars": list(SCALARS)})
        if hit is not None:
            log.info("music statistics of the corpus: measured before on this corpus (%s)", hit)
            atomic.write_text(out, (hit / out.name).read_text(encoding="utf-8"))
            return {"corpus_pieces": len(atomic.read_jsonl(out)), "corpus_cache": str(hit)}
        rows = [
            {
                "id": r["id"],
                "prompt": r["prompt"],
                "split": split,
                "interleaved": (corpus / "interleaved" / f"{r['id']}.abc").read_text(encoding="utf-8"),
            }
            for split in ("train", "eval")
            for r in split_rows(corpus, split)
        ]
        described, stats = self.runtime.describe(out.parent, rows, self.scorers)
        atomic.write_jsonl(out, described)
        self.cache.store(key, out.parent, [out.name], {})
        return {"corpus_pieces": len(described), "corpus_actor_seconds": stats.get("actor_seconds", 0.0)}

    def real_music(self) -> RealMusic:
        """The corpus's music statistics; empty for a campaign made before they existed."""
        from pipelines.campaign.music_metrics import RealMusic

        return RealMusic(atomic.read_jsonl(self.layout.real_music))

    # ------------------------------------------------------------------ one round

    def sample(self, k: int) -> dict[str, Any]:
        specs = plan.round_samples(self.setup.prompts.train, k, self.cfg.samples_per_prompt, self.cfg.seed)
        alongside = Scoring(self.layout.scores(k), self.scorers, self.project.dpo.require_music21_reads)
        return self._sample(specs, k - 1, self.layout.samples(k), alongside)

    def score(self, k: int) -> dict[str, Any]:
        # the parse guard is an exclusion only when asked for: music21's ABC reader costs ~0.1 s a piece
        return self._score(
            self.layout.samples(k), self.layout.scores(k), check_music21_reads=self.project.dpo.require_music21_reads
        )

    def pairs(self, k: int) -> dict[str, Any]:
        from pipelines.campaign.pairs import round_pairs
        from pipelines.dpo.dataset import write_pairs

        dpo = self.project.dpo
        samples = {s["id"]: s for s in atomic.read_jsonl(self.layout.samples(k) / SAMPLES_FILE)}
        scores = atomic.read_jsonl(self.layout.scores(k) / SCORES_FILE)
        lines = {p.key: p.lines for p in self.setup.prompts.train}
        real = atomic.read_jsonl(self.layout.real / SCORES_FILE)
        real_texts = None
        if dpo.chosen_like_real:  # only the styles of the real pieces need their texts
            real_texts = {r["id"]: r["interleaved"] for r in atomic.read_jsonl(self.layout.real / SAMPLES_FILE)}
        result = round_pairs(
            samples, scores, lines, dpo, k, real, real_texts, self._reward_reference(), self.real_music()
        )
        write_pairs(
            self.layout.pairs(k),
            result.records,
            {
                "round": k,
                "policy": self.policy(k - 1).path,
                "evaluator": self.setup.evaluator_dir,
                "select_portion": dpo.select_portion,
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
        ref, _ = Reference.load(Path(self.setup.evaluator_dir) / "reference.npz").scoring(
            self.project.evaluator.center_features
        )
        train = ref.select(("train",))
        return train.features, train.prompts

    def dpo(self, k: int) -> dict[str, Any]:
        dpo = self.project.dpo
        job = DPOJob(
            round=k,
            pairs_file=str(self.layout.pairs(k)),
            out_dir=str(self.layout.dpo(k)),
            start=self.policy(k - 1),
            reference_dir=self.setup.policy if dpo.reference == "initial" else None,
            tracking_uri=self.records.tracker.uri,
            run_id=self.records.child(k),
        )
        if not (self.markers.done(stage_name(k, "pairs")) or {}).get("pairs/count", 0):
            log.warning("round %d: no pairs (every candidate excluded?); the policy is carried over", k)
            self.runtime.carry_over(job)
            return {"pairs/count": 0}
        return self.runtime.train(job)

    def evaluate(self, k: int) -> dict[str, Any]:
        """Sample the held-out and the training prompts with policy k (the same seeds every round), score
        them, and measure the round against round 0 and the real pieces (``metrics.json``)."""
        from evaluators.evaluator import Reference
        from pipelines.campaign.metrics import per_prompt, round_metrics, round_music, training_metrics

        prompts = self.setup.prompts
        c = self.cfg
        specs = plan.eval_samples(prompts.heldout + self.evaluated_train, k, c.eval_samples_per_prompt, c.seed)
        alongside = Scoring(self.layout.eval_scores(k), self.scorers, True)
        t0 = time.perf_counter()
        sampled = self._sample(specs, k, self.layout.eval_samples(k), alongside)
        t1 = time.perf_counter()
        scored = self._score(self.layout.eval_samples(k), self.layout.eval_scores(k), check_music21_reads=True)
        t2 = time.perf_counter()
        scores = atomic.read_jsonl(self.layout.eval_scores(k) / SCORES_FILE)
        round0 = atomic.read_jsonl(self.layout.eval_scores(0) / SCORES_FILE) if k > 0 else None
        reference, _ = Reference.load(Path(self.setup.evaluator_dir) / "reference.npz").scoring(
            self.project.evaluator.center_features
        )
        groups = {"train": {p.key for p in self.evaluated_train}, "heldout": {p.key for p in prompts.heldout}}
        real = atomic.read_jsonl(self.layout.real / SCORES_FILE)
        metrics = round_metrics(scores, real, round0, groups, (reference.features, reference.prompts))
        music, per_prompt_music = round_music(scores, round0, groups, self.real_music())
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
        return {
            "sample_seconds": t1 - t0,
            "score_seconds": t2 - t1,
            "sample_actor_seconds": sampled.get("actor_seconds", 0.0),
            "score_actor_seconds": scored.get("actor_seconds", 0.0),
        }

    # ------------------------------------------------------------------ through the runtime

    def _sample(self, specs: list[plan.SampleSpec], version: int, folder: Path, alongside: Scoring) -> dict[str, Any]:
        """Generate ``specs`` with the policy of round ``version`` into ``folder``, scoring alongside."""
        rows, stats = self.runtime.generate(folder, [s.to_dict() for s in specs], self.policy(version), alongside)
        atomic.write_jsonl(folder / SAMPLES_FILE, rows)
        return {"samples": len(rows), **stats}

    def _score(self, samples: Path, folder: Path, check_music21_reads: bool = False) -> dict[str, Any]:
        rows = [score_row(s) for s in atomic.read_jsonl(samples / SAMPLES_FILE)]
        scored, stats = self.runtime.score(rows, Scoring(folder, self.scorers, check_music21_reads))
        atomic.write_jsonl(folder / SCORES_FILE, scored)
        return {"scored": len(scored), **stats}
