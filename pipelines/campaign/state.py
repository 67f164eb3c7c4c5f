"""Where a campaign stands: one atomically written marker per finished stage, which also records what the
stage produced (every output file's size and SHA-256), so the state on disk is checked before it is trusted.

A stage is done exactly when its marker exists and its outputs are still what the marker recorded. Outputs
are written (atomically) before the marker, so a crash leaves at most one stage half done, and that stage is
redone on resume, keeping the work units it already finished (complete files of their own, each checked
when read). A stage whose outputs changed or vanished is damaged: resume redoes it and every stage after it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from base import atomic
from base.atomic import file_sha256

# Files above this size are checked by size only: hashing a multi-GB checkpoint on every `status` costs more
# than the damage it would find (a cut-short file changes its size).
HASH_LIMIT = 256 * 2**20


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return []


def snapshot(paths: list[Path], root: Path) -> dict[str, list[Any]]:
    """{file: [size, sha256 or None]} for every file under ``paths``; names relative to ``root`` when inside."""
    out: dict[str, list[Any]] = {}
    for top in paths:
        files = _files(top)
        if not files:  # a stage output that is not there when the stage ends is recorded as such
            out[_name(top, root)] = [None, None]
        for f in files:
            size = f.stat().st_size
            out[_name(f, root)] = [size, file_sha256(f) if size <= HASH_LIMIT else None]
    return out


def _name(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _under(name: str, tops: list[Path], root: Path) -> bool:
    path = Path(name) if os.path.isabs(name) else root / name
    return any(path == top or top in path.parents for top in tops)


def damage(recorded: dict[str, list[Any]], root: Path) -> list[str]:
    """What no longer matches a snapshot: missing files, and files whose size or content changed."""
    problems = []
    for name, (size, sha) in sorted(recorded.items()):
        path = Path(name) if os.path.isabs(name) else root / name
        if size is None:
            continue
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} changed ({size} → {path.stat().st_size} bytes)")
        elif sha is not None and file_sha256(path) != sha:
            problems.append(f"{name} changed (its content differs from what the stage wrote)")
    return problems


class Markers:
    def __init__(self, campaign_dir: str | Path):
        self.root = Path(campaign_dir)
        self.dir = self.root / "markers"

    def path(self, stage: str) -> Path:
        return self.dir / f"{stage.replace('/', '.')}.json"

    def read(self, stage: str) -> tuple[dict[str, Any] | None, str | None]:
        """(marker, None), (None, None) when the stage has none, or (None, why) when it cannot be read."""
        p = self.path(stage)
        if not p.is_file():
            return None, None
        try:
            marker = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, f"its marker {p.name} is damaged ({err})"
        if not isinstance(marker, dict) or marker.get("stage") != stage:
            return None, f"its marker {p.name} is not a marker of this stage"
        return marker, None

    def done(self, stage: str) -> dict[str, Any] | None:
        """The stage's marker when it is readable (whether its outputs still match is ``check``'s job)."""
        return self.read(stage)[0]

    def check(self, stage: str, handed_over: list[Path] | None = None) -> tuple[dict[str, Any] | None, list[str]]:
        """(marker, []) for a finished stage whose outputs are intact; (None, problems) for a damaged one;
        (None, []) for a stage not finished yet.

        Recorded files under ``handed_over`` are not checked: a marker written before those files passed to
        another stage (a round's artifacts, now its report stage's) still records them, and they are the
        other stage's to check and to rewrite.
        """
        marker, problem = self.read(stage)
        if problem:
            return None, [problem]
        if marker is None:
            return None, []
        recorded = marker.get("outputs", {})
        if handed_over:
            recorded = {n: v for n, v in recorded.items() if not _under(n, handed_over, self.root)}
        problems = damage(recorded, self.root)
        return (None, problems) if problems else (marker, [])

    def mark(self, stage: str, info: dict[str, Any] | None = None, outputs: list[Path] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"stage": stage, "finished_at": time.time(), **(info or {})}
        record["outputs"] = snapshot(outputs or [], self.root)
        atomic.write_json(self.path(stage), record)

    def clear(self, stages: list[str]) -> list[str]:
        """Remove the markers of ``stages``; the ones that existed."""
        removed = []
        for stage in stages:
            p = self.path(stage)
            if p.exists():
                p.unlink()
                removed.append(stage)
        return removed
