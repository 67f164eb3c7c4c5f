"""The pairs stage of a round: scored candidates → chosen / rejected pair records (NotaGen's rules).

Pure: it reads the round's sample and score rows and returns the records the pair dataset holds; the
driver writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.dataset import PairRecord
from pipelines.dpo.pairs import Candidate, build_pairs


def candidates(
    scores: list[dict], min_meter_fill: float = 0.0, ceilings: dict[str, float] | None = None
) -> list[Candidate]:
    """One candidate per score row; an unfinished piece (patch budget hit) may not be chosen, nor one below
    ``min_meter_fill`` or above its prompt's ``ceilings`` score."""
    return [
        Candidate(
            s["id"],
            s["prompt"],
            s["clamp_score"],
            valid=bool(s["valid"]) and bool(s["finished"]),
            plagiarism=bool(s["plagiarism"]),
            staves_grouped=bool(s["staves_grouped"]),
            meter_fill=s["meter_full"] / s["meter_bars"] if s.get("meter_bars") else math.nan,
            min_meter_fill=min_meter_fill,
            ceiling=(ceilings or {}).get(s["prompt"], math.inf),
        )
        for s in scores
    ]


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
    real_means: dict[str, float] | None = None,
) -> RoundPairs:
    """Pair records of round ``round_``. A piece's text starts with the prompt lines it was sampled from
    (``prompt_lines[prompt]``); the record splits it there into prompt and completion."""
    cands = candidates(scores, cfg.min_meter_fill, (real_means or {}) if cfg.cap_at_real else None)
    pairs = build_pairs(cands, cfg.select_portion, cfg.max_pairs_per_prompt, cfg.seed + round_)
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
