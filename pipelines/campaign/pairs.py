"""The pairs stage of a round: scored candidates → chosen / rejected pair records (NotaGen's rules).

Pure: it reads the round's sample and score rows and returns the records the pair dataset holds; the
driver writes them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from evaluators.meter import time_signature
from evaluators.music_stats import DURATION_BINS, RHYTHM_AND_MOTION, atypicality, summed
from pipelines.campaign.metrics import per_prompt
from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.dataset import PairRecord
from pipelines.dpo.pairs import Candidate, build_pairs


def main_note_length(stats: dict[str, list[int]] | None) -> str:
    """A piece's most common note length (its duration histogram's fullest bin, in quarter notes), '' when
    it has no note statistics."""
    counts = (stats or {}).get("duration")
    if not counts or not sum(counts):
        return ""
    fullest = int(np.argmax(counts))
    return str(DURATION_BINS[fullest]) if fullest < len(DURATION_BINS) else "other"


def styles(texts: dict[str, str], scores: list[dict], respects: list[str]) -> dict[str, str]:
    """Each piece's style in ``respects`` (``dpo.chosen_like_real``), e.g. 'meter=6/8 rhythm=0.5', from its
    text and its score row's note statistics."""
    stats = {s["id"]: s.get("stats") for s in scores}
    parts = {
        "meter": lambda i: time_signature(texts[i]),
        "rhythm": lambda i: main_note_length(stats.get(i)),
    }
    return {i: " ".join(f"{name}={parts[name](i)}" for name in respects) for i in texts}


def style_shares(real: list[dict], real_styles: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per prompt, the share of each style among its real pieces."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in real:
        if r["id"] in real_styles:
            counts[r["prompt"]][real_styles[r["id"]]] += 1
    return {p: {g: n / sum(c.values()) for g, n in sorted(c.items())} for p, c in counts.items()}


def atypicality_limits(real: list[dict], quantile: float) -> tuple[dict[str, dict], dict[str, float]]:
    """Per prompt, the real pieces' summed note histograms and the ``quantile`` of their own atypicality
    against them: how unlike its prompt's music a real piece may be, read off the real pieces."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in real:
        if r.get("stats"):
            by[r["prompt"]].append(r["stats"])
    references, limits = {}, {}
    for prompt, stats in by.items():
        reference = {name: summed(stats, name) for name in RHYTHM_AND_MOTION}
        own = [a for a in (atypicality(s, reference) for s in stats) if not math.isnan(a)]
        if own:
            references[prompt], limits[prompt] = reference, float(np.quantile(own, quantile))
    return references, limits


def real_ceilings(real: list[dict], quantile: float | None) -> dict[str, float]:
    """Per prompt, the score its real pieces reach: their mean, or (``quantile``) that quantile of their
    scores."""
    if quantile is None:
        return per_prompt(real)
    by: dict[str, list[float]] = defaultdict(list)
    for r in real:
        if not math.isnan(r["clamp_score"]):
            by[r["prompt"]].append(r["clamp_score"])
    return {p: float(np.quantile(v, quantile)) for p, v in sorted(by.items())}


def candidates(
    scores: list[dict], cfg: DPORoundConfig, real: list[dict] | None = None, groups: dict[str, str] | None = None
) -> list[Candidate]:
    """One candidate per score row, with the guards ``cfg`` turns on: an unfinished piece (patch budget hit)
    may never be chosen; ``real`` (the score rows of the prompts' real held-out pieces) gives the ceilings
    and the note-statistics limits; ``groups`` maps ids to their style (``dpo.chosen_like_real``)."""
    real = real or []
    ceilings = real_ceilings(real, cfg.cap_quantile) if cfg.cap_at_real else {}
    references: dict[str, dict] = {}
    limits: dict[str, float] = {}
    guarded = cfg.typical_notes_quantile is not None
    if cfg.typical_notes_quantile is not None:
        references, limits = atypicality_limits(real, cfg.typical_notes_quantile)
    out = []
    for s in scores:
        prompt = s["prompt"]
        out.append(
            Candidate(
                s["id"],
                prompt,
                s["clamp_score"],
                valid=bool(s["valid"]) and bool(s["finished"]),
                plagiarism=bool(s["plagiarism"]),
                staves_grouped=bool(s["staves_grouped"]),
                meter_fill=s["meter_full"] / s["meter_bars"] if s.get("meter_bars") else math.nan,
                min_meter_fill=cfg.min_meter_fill,
                ceiling=ceilings.get(prompt, math.inf),
                parses=s.get("parses_abc"),
                require_parse=cfg.require_parse,
                group=(groups or {}).get(s["id"], ""),
                # a prompt without real pieces' statistics has no limit to hold its candidates to: nan fails
                atypicality=atypicality(s.get("stats"), references[prompt]) if prompt in references else math.nan,
                max_atypicality=limits.get(prompt, -math.inf) if guarded else math.inf,
            )
        )
    return out


@dataclass
class RoundPairs:
    records: list[PairRecord]
    candidates: int
    excluded: int

    @property
    def prompts(self) -> int:
        return len({r.prompt for r in self.records})


def round_pairs(
    samples: dict[str, dict],
    scores: list[dict],
    prompt_lines: dict[str, tuple[str, ...]],
    cfg: DPORoundConfig,
    round_: int,
    real: list[dict] | None = None,
    real_texts: dict[str, str] | None = None,
) -> RoundPairs:
    """Pair records of round ``round_``. A piece's text starts with the prompt lines it was sampled from
    (``prompt_lines[prompt]``); the record splits it there into prompt and completion. ``real`` are the
    score rows of the prompts' real held-out pieces and ``real_texts`` their texts, for the guards that
    hold the chosen to them."""
    shares = None
    groups = None
    if cfg.chosen_like_real:
        real_styles = styles(real_texts or {}, real or [], cfg.chosen_like_real)
        shares = style_shares(real or [], real_styles)
        groups = styles({i: s["text"] for i, s in samples.items()}, scores, cfg.chosen_like_real)
    cands = candidates(scores, cfg, real, groups)
    pairs = build_pairs(cands, cfg.select_portion, cfg.max_pairs_per_prompt, cfg.seed + round_, shares)
    records = []
    for p in pairs:
        prompt_text = "".join(prompt_lines[p.prompt])
        chosen, rejected = samples[p.chosen], samples[p.rejected]
        for s in (chosen, rejected):
            if not s["text"].startswith(prompt_text):
                raise ValueError(f"sample {s['id']}: its text does not start with the prompt lines of {p.prompt!r}")
        records.append(
            PairRecord(
                round_,
                p.prompt,
                prompt_text,
                p.chosen,
                p.rejected,
                chosen["text"][len(prompt_text) :],
                rejected["text"][len(prompt_text) :],
                p.chosen_score,
                p.rejected_score,
                chosen["seed"],
                rejected["seed"],
            )
        )
    return RoundPairs(records, len(cands), sum(1 for c in cands if c.excluded))
