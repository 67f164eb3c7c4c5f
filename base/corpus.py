"""Reading a built corpus (``clampdpo data build``): its split indexes and its manifest.

Every stage that reads the corpus (SFT, the evaluator, the campaign's prompt plan) goes through here, so a
missing or damaged corpus is reported the same way everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPLITS = ("train", "eval")


class CorpusMissing(FileNotFoundError):
    """The corpus (or one of its index files) is not there; the message says how to build it."""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON line ({err.msg}); rebuild the corpus "
                             "(clampdpo data build)") from None
        if not isinstance(row, dict) or "id" not in row:
            raise ValueError(f"{path}:{n}: a row without an id; rebuild the corpus (clampdpo data build)")
        rows.append(row)
    return rows


def split_rows(corpus: str | Path, split: str) -> list[dict[str, Any]]:
    """The rows of ``train.jsonl`` or ``eval.jsonl``: id, path (NotaGen form), prompt and its three fields."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
    index = Path(corpus) / f"{split}.jsonl"
    if not index.is_file():
        raise CorpusMissing(f"{index} not found: build the corpus first (clampdpo data build)")
    return _jsonl(index)


def manifest(corpus: str | Path) -> dict[str, dict[str, Any]]:
    """Piece id → its manifest row (empty when the corpus has no manifest, e.g. one written by hand)."""
    path = Path(corpus) / "manifest.jsonl"
    return {row["id"]: row for row in _jsonl(path)} if path.is_file() else {}
