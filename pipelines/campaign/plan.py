"""What a campaign samples: its prompts, and every sample's id and seed, as pure functions of the config.

Ids and seeds depend only on (campaign seed, round, prompt, index), so a resumed or re-run campaign asks
for exactly the same samples, and a lost work unit is regenerated identically.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from base.abc.interleave import prompt_lines
from base.corpus import SPLITS, split_rows
from pipelines.campaign.config import CampaignConfig


@dataclass(frozen=True)
class PromptSpec:
    key: str  # period_composer_instrumentation, as the corpus and the evaluator name it
    lines: tuple[str, ...]
    pieces: int  # ground-truth pieces of the prompt


@dataclass(frozen=True)
class SampleSpec:
    id: str
    prompt: str
    lines: tuple[str, ...]
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prompts:
    train: list[PromptSpec]
    heldout: list[PromptSpec]

    def to_dict(self) -> dict:
        return {"train": [asdict(p) for p in self.train], "heldout": [asdict(p) for p in self.heldout]}

    @classmethod
    def from_dict(cls, data: dict) -> Prompts:
        def spec(d: dict) -> PromptSpec:
            return PromptSpec(d["key"], tuple(d["lines"]), int(d["pieces"]))

        return cls([spec(d) for d in data["train"]], [spec(d) for d in data["heldout"]])


def corpus_prompts(corpus: str | Path) -> dict[str, tuple[tuple[str, ...], int]]:
    """Prompt key → (its three prompt lines, ground-truth pieces) over both splits of a built corpus."""
    counts: Counter = Counter()
    lines: dict[str, tuple[str, ...]] = {}
    for split in SPLITS:
        for row in split_rows(corpus, split):
            counts[row["prompt"]] += 1
            lines[row["prompt"]] = tuple(prompt_lines(row["period"], row["composer"], row["instrumentation"]))
    return {k: (lines[k], n) for k, n in counts.items()}


def choose_prompts(
    available: dict[str, tuple[tuple[str, ...], int]], cfg: CampaignConfig, scored: set[str] | None = None
) -> Prompts:
    """Held-out prompts by a seeded draw among the eligible ones; training prompts are the remaining ones
    with the most pieces. ``scored`` limits both to prompts the evaluator has a centroid for."""
    eligible = sorted(
        (k for k, (_, n) in available.items() if n >= cfg.min_prompt_pieces and (scored is None or k in scored)),
        key=lambda k: (-available[k][1], k),
    )
    if cfg.heldout_keys:
        missing = [k for k in cfg.heldout_keys if k not in eligible]
        if missing:
            raise ValueError(
                f"campaign.heldout_keys: {missing} not among the prompts with ≥ "
                f"{cfg.min_prompt_pieces} pieces and a centroid ({', '.join(eligible)})"
            )
    elif len(eligible) < cfg.heldout_prompts + 1:
        raise ValueError(
            f"campaign: only {len(eligible)} prompts have ≥ {cfg.min_prompt_pieces} pieces; "
            f"need {cfg.heldout_prompts} held-out + ≥ 1 training prompt "
            "(lower campaign.min_prompt_pieces or campaign.heldout_prompts)"
        )
    drawn = list(eligible)
    random.Random(f"{cfg.seed}/prompts").shuffle(drawn)
    heldout = set(cfg.heldout_keys) if cfg.heldout_keys else set(drawn[: cfg.heldout_prompts])
    if len(heldout) >= len(eligible):
        raise ValueError("campaign.heldout_keys: every eligible prompt is held out; none is left to train on")
    train = [k for k in eligible if k not in heldout]
    if cfg.train_prompts:
        train = train[: cfg.train_prompts]

    def spec(k: str) -> PromptSpec:
        return PromptSpec(k, available[k][0], available[k][1])

    return Prompts([spec(k) for k in train], [spec(k) for k in eligible if k in heldout])


def sample_seed(campaign_seed: int, *parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, (campaign_seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def round_samples(prompts: list[PromptSpec], round_: int, per_prompt: int, campaign_seed: int) -> list[SampleSpec]:
    """Candidates of round ``round_`` (sampled from the policy of round ``round_ − 1``)."""
    return [
        SampleSpec(
            f"r{round_:02d}-p{i:03d}-s{j:04d}", p.key, p.lines, sample_seed(campaign_seed, "train", round_, p.key, j)
        )
        for i, p in enumerate(prompts)
        for j in range(per_prompt)
    ]


def eval_samples(prompts: list[PromptSpec], round_: int, per_prompt: int, campaign_seed: int) -> list[SampleSpec]:
    """Held-out samples after round ``round_``; their seeds do not depend on the round."""
    return [
        SampleSpec(f"e{round_:02d}-p{i:03d}-s{j:04d}", p.key, p.lines, sample_seed(campaign_seed, "eval", p.key, j))
        for i, p in enumerate(prompts)
        for j in range(per_prompt)
    ]
