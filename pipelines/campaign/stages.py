"""A campaign's stages as records, and the one rule that runs them: done stays done, damage is redone, and
a stage that runs again makes every stage after it stale.

Set-up: corpus → policy → evaluator → judge → prompts → real. Round 0: eval, report. Round k ≥ 1: sample →
score → pairs → dpo → eval → report. Every stage ends with a marker (``state.Markers``) that records what it
wrote, so ``resume`` picks up where a crash left off and a stage whose outputs changed is done again.

A *leaf* stage (a round's report) reads what came before and nothing reads what it writes: running it
again leaves the stages after it alone, and a missing report does not hold up the rounds behind it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.campaign.layout import ROUND_STEPS, Layout, parse_stage, stage_name
from pipelines.campaign.state import Markers

log = logging.getLogger(__name__)

SETUP_STAGES = ("corpus", "policy", "evaluator", "judge", "prompts", "real")
LEAF_STEPS = ("report",)


@dataclass(frozen=True)
class Stage:
    """One stage: its marker's name, its round (None for a set-up stage) and its step."""

    name: str
    round: int | None
    step: str

    @classmethod
    def of(cls, name: str) -> Stage:
        k, step = parse_stage(name)
        return cls(name, k, step)

    @property
    def leaf(self) -> bool:
        """Nothing later reads what this stage writes."""
        return self.step in LEAF_STEPS


def round_stages(round_: int) -> list[str]:
    """The stages of round k in order (round 0 only evaluates the starting policy and reports it)."""
    steps = ("eval", "report") if round_ == 0 else ROUND_STEPS
    return [stage_name(round_, step) for step in steps]


def all_stages(rounds: int) -> list[str]:
    return list(SETUP_STAGES) + [s for k in range(rounds + 1) for s in round_stages(k)]


def campaign_stages(rounds: int) -> list[Stage]:
    return [Stage.of(name) for name in all_stages(rounds)]


class StageRunner:
    """Runs a campaign's stages against their markers in one folder (no Ray, no MLflow: the driver's rule)."""

    def __init__(self, layout: Layout, rounds: int):
        self.layout = layout
        self.markers = Markers(layout.root)
        self.stages = campaign_stages(rounds)
        self._at = {s.name: i for i, s in enumerate(self.stages)}  # a 1000-round campaign has 6008 stages

    def handed_over(self, stage: Stage) -> list[Path]:
        """What a stage's marker may record but no longer answers for: the round's artifacts, which eval
        stages wrote before the report had a stage of its own."""
        if stage.round is not None and stage.step == "eval":
            return self.layout.made_here(stage_name(stage.round, "report"))
        return []

    def check(self, stage: Stage) -> tuple[dict[str, Any] | None, list[str]]:
        return self.markers.check(stage.name, self.handed_over(stage))

    def run(self, name: str, body: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Stage ``name``'s marker when it finished and its outputs are intact; otherwise run ``body`` (after
        making the stages it feeds stale: their markers go, and the round outputs they made from this
        stage's old output are removed), record what it wrote, and return its marker."""
        stage = self.stage(name)
        marker, problems = self.check(stage)
        if marker is not None:
            log.info("stage %s: done already", name)
            return marker
        if problems:
            log.warning("stage %s is damaged (%s): redoing it and every stage after it", name, "; ".join(problems))
            self.markers.clear([name])
        self.invalidate_after(stage)
        log.info("stage %s ...", name)
        start = time.perf_counter()
        info = body() or {}
        info["seconds"] = time.perf_counter() - start
        self.markers.mark(name, info, self.layout.outputs(name, info))
        log.info("stage %s: done in %.1f s", name, info["seconds"])
        return self.markers.done(name) or info

    def stage(self, name: str) -> Stage:
        if name not in self._at:
            raise KeyError(f"{name} is not a stage of this campaign ({len(self.stages)} stages)")
        return self.stages[self._at[name]]

    def stale_after(self, stage: Stage) -> list[Stage]:
        """What a run of ``stage`` makes stale: every later stage, or nothing when it is a leaf."""
        return [] if stage.leaf else self.stages[self._at[stage.name] + 1 :]

    def invalidate_after(self, stage: Stage) -> list[str]:
        """Clear the markers of what ``stage`` makes stale and remove the round outputs they made."""
        later = self.stale_after(stage)
        removed = self.markers.clear([s.name for s in later])
        if removed:
            log.warning(
                "stage %s runs again, so %d later stages will too (%s ...)", stage.name, len(removed), removed[0]
            )
            for name in removed:
                for path in self.layout.made_here(name):
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
        return removed

    def status(self) -> list[tuple[str, str, str]]:
        """(stage, 'done' | 'damaged' | 'stale' | 'next' | 'pending', detail) for every stage.

        A stage after a damaged or unfinished one is 'stale' even if its marker is intact: its inputs will be
        made again, so resume redoes it too. A leaf stage that is not done holds up nothing behind it.
        """
        out: list[tuple[str, str, str]] = []
        broken = False
        for stage in self.stages:
            marker, problems = self.check(stage)
            if problems:
                out.append((stage.name, "damaged", "; ".join(problems)))
                broken = broken or not stage.leaf
            elif marker is not None:
                out.append((stage.name, "stale" if broken else "done", ""))
            elif not broken:
                out.append((stage.name, "next", ""))
                broken = not stage.leaf
            else:
                out.append((stage.name, "pending", ""))
        return out


def status(campaign_dir: str | Path, rounds: int) -> list[tuple[str, str, str]]:
    """Every stage of the campaign in ``campaign_dir`` with where it stands (``StageRunner.status``)."""
    return StageRunner(Layout(Path(campaign_dir)), rounds).status()
