"""The pair dataset of a round: one JSON line per chosen/rejected pair, with scores and provenance.

Each line carries everything DPO needs (prompt text, chosen and rejected pieces as sampled) and what a
user needs to audit it (sample ids and seeds, CLaMP scores, the policy and evaluator that made them).
The first line is a header with the dataset's format version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from base import atomic

FORMAT = "clampdpo.pairs"
VERSION = 1


@dataclass
class PairRecord:
    round: int
    prompt: str
    prompt_text: str
    chosen_id: str
    rejected_id: str
    chosen_text: str
    rejected_text: str
    chosen_score: float
    rejected_score: float
    chosen_seed: int
    rejected_seed: int


def write_pairs(path: str | Path, pairs: list[PairRecord], provenance: dict) -> None:
    header = {"format": FORMAT, "version": VERSION, "pairs": len(pairs), **provenance}
    atomic.write_jsonl(path, [header] + [asdict(p) for p in pairs])


def read_pairs(path: str | Path) -> list[PairRecord]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty pair dataset")
    header = json.loads(lines[0])
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path}: not a clampdpo pair dataset of version {VERSION} (header {header})")
    return [PairRecord(**json.loads(ln)) for ln in lines[1:] if ln.strip()]
