"""Work units: a stage's items cut into units, run through an actor pool, each finished unit one file.

A unit's file is written atomically when the unit is done, so a stage interrupted by a crash is resumed by
running only the units that have no file yet; the merged result is the units' rows in unit order, whoever
ran them and however often.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base import atomic

log = logging.getLogger(__name__)


def _intact(path: Path, chunk: list[dict]) -> bool:
    """Whether a unit's file holds one readable row for each of its items, in order (a unit is written
    atomically, so anything else is damage done after: it is run again, and said so)."""
    if not path.is_file():
        return False
    try:
        rows = atomic.read_jsonl(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log.warning("%s is damaged (%s): running the unit again", path, " ".join(str(err).split())[:120])
        return False
    if [r.get("id") for r in rows] != [c.get("id") for c in chunk]:
        log.warning("%s does not hold its unit's %d pieces: running the unit again", path, len(chunk))
        return False
    return True


def run_units(
    folder: Path,
    items: list[dict],
    unit_size: int,
    kind: str,
    pool: Callable[[], Any],
    payload: Callable[[list[dict]], Any] | None = None,
    on_unit: Callable[[str, list[dict]], None] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Run the units of ``items`` that have no file in ``folder/units`` yet, then merge every unit.

    ``pool()`` gives the ``ActorPool`` that runs them (asked for only when a unit is left to run);
    ``payload(chunk)`` wraps a unit's items into what the actor's ``kind`` method receives (the items
    themselves by default); ``on_unit(name, rows)`` is told of each unit run here once its file is written
    (the next stage may start on it).
    """
    chunks = [items[i : i + unit_size] for i in range(0, len(items), unit_size)]
    names = [f"unit-{i:04d}" for i in range(len(chunks))]
    unit_dir = folder / "units"
    unit_dir.mkdir(parents=True, exist_ok=True)
    todo = [
        (n, (payload or (lambda c: c))(ch)) for n, ch in zip(names, chunks) if not _intact(unit_dir / f"{n}.jsonl", ch)
    ]
    stats: dict[str, float] = {"units": len(chunks), "units_run": len(todo)}
    if todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=kind, unit="unit", mininterval=2)

        def done(name: str, rows: list[dict]) -> None:
            atomic.write_jsonl(unit_dir / f"{name}.jsonl", rows)
            bar.update(1)
            if on_unit is not None:
                on_unit(name, rows)

        try:
            s = pool().run(todo, kind, done)
        finally:
            bar.close()
        stats.update(
            {
                "actor_seconds": sum(s.busy_seconds),
                "pool_seconds": s.seconds,
                "retried_units": s.retried,
                "actor_failures": s.actor_failures,
            }
        )
    rows = [r for n in names for r in atomic.read_jsonl(unit_dir / f"{n}.jsonl")]
    return rows, stats
