"""Train/eval split by work, so no movement, duplicate or transposed copy of an eval piece is trained on."""

from __future__ import annotations

import hashlib


def _unit_interval(seed: int, work: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{work}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(works: list[str], eval_fraction: float, seed: int) -> list[str]:
    """'train' or 'eval' for each piece, given its work id.

    A work's side depends only on (seed, work id), so adding pieces to a corpus never moves existing
    works across the split. When the hash puts no work in eval although some were asked for, the
    work closest to the threshold is moved there, so a small corpus still has an eval split.
    """
    distinct = sorted(set(works))
    side = {w: "eval" if _unit_interval(seed, w) < eval_fraction else "train" for w in distinct}
    if eval_fraction > 0 and len(distinct) > 1 and "eval" not in side.values():
        side[min(distinct, key=lambda w: _unit_interval(seed, w))] = "eval"
    return [side[w] for w in works]
