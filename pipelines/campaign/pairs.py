"""The pairs stage of a round: scored candidates → chosen / rejected pair records (NotaGen's rules).

Pure: it reads the round's sample and score rows and returns the records the pair dataset holds; the
driver writes them.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from evaluators.meter import fill_share, time_signature
from evaluators.music_stats import DURATION_BINS, RHYTHM_AND_MOTION, atypicality, music21_reads_of, summed
from evaluators.scores import rewards
from pipelines.campaign.music_metrics import RealMusic
from pipelines.campaign.pair_checks import prompt_checks, summarise
from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.dataset import PairRecord
from pipelines.dpo.pairs import Candidate, Pair, build_pairs

log = logging.getLogger(__name__)


def main_note_length(stats: dict[str, list[int]] | None) -> str:
    """A piece's most common note length (its duration histogram's fullest bin, in quarter notes), '' when
    it has no note statistics."""
    counts = (stats or {}).get("duration")
    if not counts or not sum(counts):
        return ""
    fullest = int(np.argmax(counts))
    return str(DURATION_BINS[fullest]) if fullest < len(DURATION_BINS) else "other"


def length_class(bars: float, cuts: tuple[float, float] | None) -> str:
    """'short', 'middle' or 'long' against the thirds of the real pieces' lengths (``cuts``), '' unknown."""
    if cuts is None or math.isnan(bars):
        return ""
    return "short" if bars < cuts[0] else "long" if bars > cuts[1] else "middle"


def _bars(row: dict | None) -> float:
    """A piece's length in bars: its longest voice's measures (music statistics), else its checked voice-bars."""
    music = (row or {}).get("music") or {}
    value = music.get("bars")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float((row or {}).get("meter_bars") or math.nan)
    return float(value)


def length_cuts(real: list[dict]) -> dict[str, tuple[float, float]]:
    """Per prompt, the lengths (bars) that cut its real pieces into thirds."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in real:
        b = _bars(r)
        if not math.isnan(b):
            by[r["prompt"]].append(b)
    return {p: (float(np.quantile(v, 1 / 3)), float(np.quantile(v, 2 / 3))) for p, v in by.items() if v}


def styles(
    texts: dict[str, str], scores: list[dict], respects: list[str], cuts: dict[str, tuple[float, float]] | None = None
) -> dict[str, str]:
    """Each piece's style in ``respects`` (``dpo.chosen_like_real``), e.g. 'meter=6/8 rhythm=0.5', from its
    text and its score row (note statistics, length against ``cuts``: its prompt's ``length_cuts``)."""
    rows = {s["id"]: s for s in scores}
    parts = {
        "meter": lambda i: time_signature(texts[i]),
        "rhythm": lambda i: main_note_length((rows.get(i) or {}).get("stats")),
        "length": lambda i: length_class(_bars(rows.get(i)), (cuts or {}).get((rows.get(i) or {}).get("prompt", ""))),
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
    """Per prompt, the reward its real pieces reach: their mean, or (``quantile``) that quantile of their
    rewards."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in real:
        if not math.isnan(reward_of(r)):
            by[r["prompt"]].append(reward_of(r))
    if quantile is None:
        return {p: float(np.mean(v)) for p, v in sorted(by.items())}
    return {p: float(np.quantile(v, quantile)) for p, v in sorted(by.items())}


REWARD = "reward"  # the score row key a round ranks by (``with_rewards``)


def reward_of(row: dict) -> float:
    """The reward a row is ranked by: its ``REWARD`` when ``with_rewards`` gave it one, else its CLaMP score."""
    return float(row.get(REWARD, row["clamp_score"]))


def with_rewards(rows: list[dict], cfg: DPORoundConfig, reference: tuple[np.ndarray, list[str]] | None) -> list[dict]:
    """Copies of score rows with the round's reward (``dpo.reward``, ``reward_k``, ``reward_contrast``) under
    ``REWARD``, computed from each row's feature and the evaluator's training pieces (``reference``: their
    features, in the space rows' features are in, and prompts). NotaGen's centroid score without contrast is
    the row's own CLaMP score, and needs no reference."""
    if cfg.reward == "centroid" and not cfg.reward_contrast:
        return [{**r, REWARD: r["clamp_score"]} for r in rows]
    if reference is None:
        raise ValueError(f"dpo.reward={cfg.reward} with contrast {cfg.reward_contrast} needs the evaluator's reference")
    size = len(reference[0][0]) if len(reference[0]) else 0
    feats = np.array([r.get("feature") or [math.nan] * size for r in rows], dtype=np.float64).reshape(len(rows), -1)
    values = rewards(
        feats, [r["prompt"] for r in rows], reference[0], reference[1], cfg.reward, cfg.reward_k, cfg.reward_contrast
    )
    return [{**r, REWARD: float(v)} for r, v in zip(rows, values)]


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
                reward_of(s),
                valid=bool(s["valid"]) and bool(s["finished"]),
                plagiarism=bool(s["plagiarism"]),
                staves_grouped=bool(s["staves_grouped"]),
                meter_fill=fill_share([s]),
                min_meter_fill=cfg.min_meter_fill,
                ceiling=ceilings.get(prompt, math.inf),
                music21_reads=music21_reads_of(s),
                require_music21_reads=cfg.require_music21_reads,
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
    checks: dict[str, dict[str, float]] = field(default_factory=dict)  # per prompt (pair_checks.prompt_checks)
    dropped: list[str] = field(default_factory=list)  # prompts whose pairs pointed away (dpo.direction_guard)

    @property
    def prompts(self) -> int:
        return len({r.prompt for r in self.records})

    def metrics(self) -> dict[str, float]:
        """The pair checks under stable names (``pairs/direction``, ``pairs/js_meter/chosen``, ...)."""
        out = summarise(self.checks) if self.checks else {}
        out["pairs/prompts_dropped"] = float(len(self.dropped))
        return out


def check_pairs(
    pairs: list[Pair], scores: list[dict], music: RealMusic, cfg: DPORoundConfig
) -> tuple[list[Pair], dict[str, dict[str, float]], list[str]]:
    """The pairs kept, each prompt's checks (``pair_checks``) and the prompts dropped because their pairs
    point away from the real music (``dpo.direction_guard: skip``; ``warn`` only logs them)."""
    rows = {s["id"]: s for s in scores}
    checks: dict[str, dict[str, float]] = {}
    for prompt in sorted({p.prompt for p in pairs}):
        mine = [p for p in pairs if p.prompt == prompt]
        chosen = [rows[i] for i in sorted({p.chosen for p in mine})]
        rejected = [rows[i] for i in sorted({p.rejected for p in mine})]
        checks[prompt] = prompt_checks(music, prompt, chosen, rejected, [s for s in scores if s["prompt"] == prompt])
    away = sorted(p for p, c in checks.items() if c["direction"] < cfg.min_direction)  # nan: not known to point away
    for prompt in away:
        log.warning(
            "pairs of %s point away from its real music (direction %+.2f < %+.2f)%s",
            prompt,
            checks[prompt]["direction"],
            cfg.min_direction,
            ": dropped (dpo.direction_guard: skip)" if cfg.direction_guard == "skip" else "",
        )
    if cfg.direction_guard != "skip":
        return pairs, checks, []
    return [p for p in pairs if p.prompt not in away], checks, away


def round_pairs(
    samples: dict[str, dict],
    scores: list[dict],
    prompt_lines: dict[str, tuple[str, ...]],
    cfg: DPORoundConfig,
    round_: int,
    real: list[dict] | None = None,
    real_texts: dict[str, str] | None = None,
    reference: tuple[np.ndarray, list[str]] | None = None,
    music: RealMusic | None = None,
) -> RoundPairs:
    """Pair records of round ``round_``. A piece's text starts with the prompt lines it was sampled from
    (``prompt_lines[prompt]``); the record splits it there into prompt and completion. ``real`` are the
    score rows of the prompts' real held-out pieces and ``real_texts`` their texts, for the guards that
    hold the chosen to them; ``reference`` the evaluator's training pieces (features, prompts) for rewards
    other than the centroid score; ``music`` the corpus's music statistics, for the pair checks."""
    scores = with_rewards(scores, cfg, reference)
    real = with_rewards(real or [], cfg, reference)
    pairs, cands = choose(samples, scores, cfg, round_, real, real_texts)
    checks: dict[str, dict[str, float]] = {}
    dropped: list[str] = []
    if music is not None and cfg.direction_guard != "off":
        pairs, checks, dropped = check_pairs(pairs, scores, music, cfg)
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
    return RoundPairs(records, len(cands), sum(1 for c in cands if c.excluded), checks, dropped)


def choose(
    samples: dict[str, dict],
    scores: list[dict],
    cfg: DPORoundConfig,
    round_: int,
    real: list[dict],
    real_texts: dict[str, str] | None = None,
) -> tuple[list[Pair], list[Candidate]]:
    """The round's pairs by ``cfg``'s rules and the candidates they came from, from score rows that carry
    their reward (``with_rewards``)."""
    shares = None
    groups = None
    if cfg.chosen_like_real:
        cuts = length_cuts(real)
        real_styles = styles(real_texts or {}, real, cfg.chosen_like_real, cuts)
        shares = style_shares(real, real_styles)
        groups = styles({i: s["text"] for i, s in samples.items()}, scores, cfg.chosen_like_real, cuts)
    cands = candidates(scores, cfg, real, groups)
    pairs = build_pairs(
        cands, cfg.select_portion, cfg.max_pairs_per_prompt, cfg.seed + round_, shares, cfg.pair_within_style
    )
    return pairs, cands
