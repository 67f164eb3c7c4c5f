"""Chosen / rejected pairs from scored candidates, by NotaGen's rules (``RL/data.py``).

Per prompt, candidates are ranked by CLaMP score. The chosen are the best ``select_portion`` of the
candidates that pass the exclusions (bars not aligned / invalid, staves of one instrument not grouped,
plagiarism); the rejected are the worst ``select_portion`` of the rest (an excluded piece is a fine
rejection). Pairs are every chosen × every rejected, capped per prompt by a seeded draw.

Candidates may also carry a ``group`` (their style: the campaign gives each its time signature when
``dpo.chosen_like_real`` asks), and a prompt may come with the shares of those groups among its real
pieces: then the chosen keep those shares (each group gets its share of the chosen places, largest
remainders first, filled by its best eligible candidates; places a group cannot fill stay empty). Left
to rank across groups, our reward moves a prompt's samples to the metres it favours (American tunes from
2/4 to 6/8, a metre a tenth of their real pieces use). Shaped chosen keep the metres, at a price: on the
default corpus the reward gained half as much and the independent judge did not confirm the gain, so the
default preset leaves this off (README, "Which candidates may be chosen").
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
    ceiling: float = math.inf  # above this score it may not be chosen (dpo.cap_at_real)
    music21_reads: bool | None = None  # music21's own ABC reader reads it (None: not checked)
    require_music21_reads: bool = False  # unread (or unchecked) it may not be chosen (dpo.require_music21_reads)
    group: str = ""  # its style, for the real pieces' shares of styles (dpo.chosen_like_real)
    atypicality: float = math.nan  # its note lengths / intervals against the prompt's real pieces (music_stats)
    max_atypicality: float = math.inf  # above this (or nan) it may not be chosen (dpo.typical_notes_quantile)

    @property
    def excluded(self) -> str:
        """Why the piece may not be chosen ('' when it may)."""
        if not self.valid:
            return "invalid or bars not aligned"
        if self.require_music21_reads and self.music21_reads is not True:
            return "music21 cannot read it" if self.music21_reads is False else "not checked by music21"
        if self.min_meter_fill > 0 and not self.meter_fill >= self.min_meter_fill:  # nan (no bars) fails a floor
            return "bars do not fill the meter"
        if self.max_atypicality < math.inf and not self.atypicality <= self.max_atypicality:
            return "note lengths or intervals unlike the prompt's real pieces"
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


def places(k: int, shares: dict[str, float]) -> dict[str, int]:
    """``k`` places split in proportion to ``shares`` (largest remainders first, ties by name)."""
    total = sum(v for v in shares.values() if v > 0)
    if k <= 0 or total <= 0:
        return {}
    exact = {g: k * v / total for g, v in shares.items() if v > 0}
    out = {g: math.floor(x) for g, x in exact.items()}
    for g in sorted(exact, key=lambda g: (-(exact[g] - out[g]), g))[: k - sum(out.values())]:
        out[g] += 1
    return out


def select(
    candidates: list[Candidate], portion: float, shares: dict[str, float] | None = None
) -> tuple[list[Candidate], list[Candidate]]:
    """(chosen, rejected) of one prompt's candidates; with ``shares`` (of the candidates' groups among the
    prompt's real pieces) the chosen keep them."""
    if not 0 < portion <= 0.5:
        raise ValueError(f"select_portion must be in (0, 0.5], got {portion}")
    k = max(1, round(portion * len(candidates)))
    ranked = sorted(candidates, key=lambda c: (-c.score if not math.isnan(c.score) else math.inf, c.id))
    eligible = [c for c in ranked if not c.excluded]
    if shares is None:
        chosen = eligible[:k]
    else:
        quota = places(k, shares)
        chosen = []
        for c in eligible:
            if quota.get(c.group, 0) > 0:
                chosen.append(c)
                quota[c.group] -= 1
    taken = {c.id for c in chosen}
    rest = [c for c in ranked if c.id not in taken]
    rejected = rest[-k:] if rest else []
    # a rejected piece must score below every chosen one, or the pair teaches the wrong direction
    if chosen:
        floor = min(c.score for c in chosen)
        rejected = [c for c in rejected if math.isnan(c.score) or c.score < floor]
    return chosen, rejected


def select_within(
    candidates: list[Candidate], portion: float, shares: dict[str, float]
) -> list[tuple[list[Candidate], list[Candidate]]]:
    """(chosen, rejected) of each group of one prompt's candidates: the chosen keep ``shares`` as in
    ``select``, and each group's rejected are the worst of its own candidates, as many as its chosen, all
    below its lowest chosen score: the pairs compare pieces of one style."""
    chosen, _ = select(candidates, portion, shares)
    ranked = sorted(candidates, key=lambda c: (-c.score if not math.isnan(c.score) else math.inf, c.id))
    taken = {c.id for c in chosen}
    out = []
    for group in sorted({c.group for c in chosen}):
        mine = [c for c in chosen if c.group == group]
        floor = min(c.score for c in mine)
        rest = [c for c in ranked if c.group == group and c.id not in taken]
        rejected = [c for c in rest[-len(mine) :] if math.isnan(c.score) or c.score < floor]
        out.append((mine, rejected))
    return out


def build_pairs(
    candidates: list[Candidate],
    portion: float = 0.1,
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    shares: dict[str, dict[str, float]] | None = None,
    within: bool = False,
) -> list[Pair]:
    """Pairs of every prompt, in prompt order; deterministic for a seed. ``shares[prompt]``, when given, are
    the shares of the candidates' groups among that prompt's real pieces, for the chosen to keep (a prompt
    without them is ranked as one group); ``within`` pairs each chosen only with rejected of its own group
    (``select_within``)."""
    by_prompt: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_prompt[c.prompt].append(c)
    pairs: list[Pair] = []
    for prompt in sorted(by_prompt):
        mine = (shares or {}).get(prompt) or None
        if within and mine is not None:
            groups = select_within(by_prompt[prompt], portion, mine)
        else:
            groups = [select(by_prompt[prompt], portion, mine)]
        these = [
            Pair(prompt, c.id, r.id, c.score, r.score) for chosen, rejected in groups for c in chosen for r in rejected
        ]
        if max_pairs_per_prompt is not None and len(these) > max_pairs_per_prompt:
            rng = random.Random(f"{seed}:{prompt}")
            these = sorted(rng.sample(these, max_pairs_per_prompt), key=lambda p: (p.chosen, p.rejected))
        pairs.extend(these)
    return pairs
