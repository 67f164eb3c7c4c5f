"""A round's report stage: its best and worst pieces as MIDI, a score histogram, the campaign's HTML report,
its MLflow child run's metrics and artifacts, and its policy in the model registry (``best`` alias).

It runs after the eval stage's marker, under a marker of its own; nothing reads what it writes, so
redoing it (a report deleted, a registry that was down) leaves every other stage as it is.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base import atomic
from pipelines.campaign import identity
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout, round_name
from pipelines.campaign.metrics import migrate

if TYPE_CHECKING:
    from orchestration.campaign_tracking import CampaignTracker

log = logging.getLogger(__name__)


class CampaignRecords:
    """The campaign's MLflow parent run, its rounds' child runs and the policy registry."""

    def __init__(self, tracker: CampaignTracker, parent: str, layout: Layout, state: dict[str, Any]):
        self.tracker, self.parent, self.layout, self.state = tracker, parent, layout, state

    def child(self, k: int) -> str:
        """Round k's MLflow child run (created once, its id kept in the round folder)."""
        f = self.layout.run_file(k)
        if f.is_file():
            return json.loads(f.read_text())["run_id"]
        run_id = self.tracker.start_child(self.parent, round_name(k), {"clampdpo.round": str(k)})
        atomic.write_json(f, {"run_id": run_id})
        return run_id

    def adopt(self, run_id: str | None) -> None:
        self.tracker.adopt(self.parent, run_id)

    def report(self, k: int, policy_dir: str, artifacts: bool, best_worst_per_prompt: int) -> dict[str, Any]:
        """Round k's MLflow records and registry entry, and (``artifacts``) its pieces, histogram and the HTML
        report; returns what its marker keeps (the artifacts' seconds, which bench/round.py shows apart)."""
        start = time.perf_counter()
        layout, t = self.layout, self.tracker
        metrics = migrate(json.loads(layout.metrics(k).read_text())["metrics"])
        child = self.child(k)
        art = layout.artifacts(k)
        report = self._artifacts(k, art, best_worst_per_prompt) if artifacts else None
        seconds = time.perf_counter() - start
        t.log_metrics(child, metrics, k)
        t.log_metrics(self.parent, metrics, k)
        t.log_artifact(child, layout.metrics(k))
        if art.is_dir():
            t.log_artifact(child, art, "artifacts")
        if layout.pairs(k).is_file():
            t.log_artifact(child, layout.pairs(k), "pairs")
        if report is not None:
            t.log_artifact(child, report)
        self._register(k, child, policy_dir, metrics)
        t.finish(child)
        return {"artifacts_seconds": seconds}

    def _artifacts(self, k: int, art: Path, best_worst_per_prompt: int) -> Path | None:
        """The round's best, median and worst pieces, its score histogram, and the campaign's HTML report."""
        from pipelines.campaign.artifacts import best_and_worst, score_histogram

        layout = self.layout
        heldout_scores = atomic.read_jsonl(layout.eval_scores(k) / SCORES_FILE)
        series = {"held-out": [s["clamp_score"] for s in heldout_scores]}
        samples = {s["id"]: s for s in atomic.read_jsonl(layout.eval_samples(k) / SAMPLES_FILE)}
        if k > 0:
            cand = atomic.read_jsonl(layout.scores(k) / SCORES_FILE)
            series["candidates"] = [s["clamp_score"] for s in cand]
            samples.update({s["id"]: s for s in atomic.read_jsonl(layout.samples(k) / SAMPLES_FILE)})
            best_and_worst(samples, cand, art / "candidates", best_worst_per_prompt)
        best_and_worst(samples, heldout_scores, art / "heldout", best_worst_per_prompt)
        score_histogram(series, art / "clamp_scores.png", f"round {k}")
        return self._write_report()

    def _register(self, k: int, child: str, policy_dir: str, metrics: dict[str, float]) -> None:
        """Round k's policy in the registry (once: a redone report does not register it twice), and the
        ``best`` alias on the round that ranks first by ``best_metric``."""
        rounds = self.state.setdefault("registered", {})
        if str(k) not in rounds:
            version = self.tracker.register_policy(child, Path(policy_dir), k)
            rounds[str(k)] = {"version": version, "rank": best_metric(metrics)}
            identity.write_state(self.layout.root, self.state)

        def rank(r: dict) -> float:
            value = r.get("rank", r.get("judge/mean", math.nan))  # "judge/mean": a campaign registered before
            return -math.inf if value is None or math.isnan(value) else value

        self.tracker.set_best(max(rounds.values(), key=rank)["version"])

    def _write_report(self) -> Path | None:
        """The campaign's HTML report so far (report.html); a report that cannot be built never stops a round."""
        from pipelines.campaign.report import build_report

        try:
            return build_report([self.layout.root])
        except Exception as err:
            log.warning("report.html not written: %s: %s", type(err).__name__, err)
            return None


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
