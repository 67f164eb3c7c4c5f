"""Chosen / rejected pairs from scored candidates, by NotaGen's rules (``RL/data.py``).

Per prompt, candidates are ranked by CLaMP score. The chosen are the best ``select_portion`` of the
candidates that pass the exclusions (bars not aligned / invalid, staves of one instrument not grouped,
plagiarism); the rejected are the worst ``select_portion`` of the rest (an excluded piece is a fine
rejection). Pairs are every chosen × every rejected, capped per prompt by a seeded draw.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass

_VOICE = re.compile(r"^V:(\S+)(.*)$")
_NAME = re.compile(r'\bnm="([^"]*)"')


@dataclass
class Candidate:
    id: str
    prompt: str
    score: float
    valid: bool = True
    plagiarism: bool = False
    staves_grouped: bool = True
    meter_fill: float = 1.0  # share of its bars that fill the meter (evaluators/meter.py)
    min_meter_fill: float = 0.0  # below this it may not be chosen (dpo.min_meter_fill)
    ceiling: float = math.inf  # above this score it may not be chosen (dpo.cap_at_real: the real pieces' mean)

    @property
    def excluded(self) -> str:
        """Why the piece may not be chosen ('' when it may)."""
        if not self.valid:
            return "invalid or bars not aligned"
        if self.min_meter_fill > 0 and not self.meter_fill >= self.min_meter_fill:  # nan (no bars) fails a floor
            return "bars do not fill the meter"
        if not self.staves_grouped:
            return "staves of one instrument not grouped"
        if self.plagiarism:
            return "plagiarism"
        if math.isnan(self.score):
            return "no score"
        if self.score > self.ceiling:
            return "scores above the real pieces' mean (over-optimisation)"
        return ""


@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float


def staves_grouped(abc: str) -> bool:
    """Voices named as one instrument (the same ``nm=``) must share a ``{}``/``()``/``[]`` group of the
    ``%%score`` line; a piece without such voices passes."""
    names: dict[str, str] = {}
    score_line = ""
    for line in abc.splitlines():
        if line.startswith("%%score"):
            score_line = line[len("%%score") :]
        m = _VOICE.match(line)
        if m:
            n = _NAME.search(m.group(2))
            if n:
                names[m.group(1)] = n.group(1)
    by_name: dict[str, list[str]] = defaultdict(list)
    for voice, name in names.items():
        by_name[name].append(voice)
    shared = [voices for voices in by_name.values() if len(voices) > 1]
    if not shared:
        return True
    groups = [set(g.split()) for g in re.findall(r"[{(\[]([^{}()\[\]]*)[})\]]", score_line.replace("|", " "))]
    return all(any(set(voices) <= g for g in groups) for voices in shared)


def select(candidates: list[Candidate], portion: float) -> tuple[list[Candidate], list[Candidate]]:
    """(chosen, rejected) of one prompt's candidates."""
    if not 0 < portion <= 0.5:
        raise ValueError(f"select_portion must be in (0, 0.5], got {portion}")
    k = max(1, round(portion * len(candidates)))
    ranked = sorted(candidates, key=lambda c: (-c.score if not math.isnan(c.score) else math.inf, c.id))
    chosen = [c for c in ranked if not c.excluded][:k]
    taken = {c.id for c in chosen}
    rest = [c for c in ranked if c.id not in taken]
    rejected = rest[-k:] if rest else []
    # a rejected piece must score below every chosen one, or the pair teaches the wrong direction
    if chosen:
        floor = min(c.score for c in chosen)
        rejected = [c for c in rejected if math.isnan(c.score) or c.score < floor]
    return chosen, rejected


def build_pairs(
    candidates: list[Candidate], portion: float = 0.1, max_pairs_per_prompt: int | None = None, seed: int = 0
) -> list[Pair]:
    """Pairs of every prompt, in prompt order; deterministic for a seed."""
    by_prompt: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_prompt[c.prompt].append(c)
    pairs: list[Pair] = []
    for prompt in sorted(by_prompt):
        chosen, rejected = select(by_prompt[prompt], portion)
        these = [Pair(prompt, c.id, r.id, c.score, r.score) for c in chosen for r in rejected]
        if max_pairs_per_prompt is not None and len(these) > max_pairs_per_prompt:
            rng = random.Random(f"{seed}:{prompt}")
            these = sorted(rng.sample(these, max_pairs_per_prompt), key=lambda p: (p.chosen, p.rejected))
        pairs.extend(these)
    return pairs
