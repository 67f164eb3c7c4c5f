"""Where a campaign stands: one atomically written marker per finished stage.

A stage is done exactly when its marker exists; its outputs are written (atomically) before the marker.
A crash therefore leaves at most one stage half done, and that stage is redone on resume — keeping the
work units it already finished, which are complete files of their own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from base import atomic


class Markers:
    def __init__(self, campaign_dir: str | Path):
        self.dir = Path(campaign_dir) / "markers"

    def path(self, stage: str) -> Path:
        return self.dir / f"{stage.replace('/', '.')}.json"

    def done(self, stage: str) -> dict[str, Any] | None:
        p = self.path(stage)
        return json.loads(p.read_text()) if p.is_file() else None

    def mark(self, stage: str, info: dict[str, Any] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.path(stage), {"stage": stage, "finished_at": time.time(), **(info or {})})


def round_stages(round_: int) -> list[str]:
    """The stages of round k in order (round 0 only evaluates the starting policy)."""
    if round_ == 0:
        return ["round-00/eval"]
    r = f"round-{round_:02d}"
    return [f"{r}/sample", f"{r}/score", f"{r}/pairs", f"{r}/dpo", f"{r}/eval"]


SETUP_STAGES = ["corpus", "policy", "evaluator", "judge", "prompts", "real"]


def all_stages(rounds: int) -> list[str]:
    return SETUP_STAGES + [s for k in range(rounds + 1) for s in round_stages(k)]


def status(campaign_dir: str | Path, rounds: int) -> list[tuple[str, str]]:
    """(stage, 'done' | 'next' | 'pending') for every stage of the campaign."""
    markers = Markers(campaign_dir)
    out, seen_next = [], False
    for stage in all_stages(rounds):
        if markers.done(stage):
            out.append((stage, "done"))
        elif not seen_next:
            out.append((stage, "next"))
            seen_next = True
        else:
            out.append((stage, "pending"))
    return out
