"""The reward lab: a round's scored candidates, judged under several reward and pair-rule settings, without
training a step.

A setting is the ``dpo:`` section with some fields changed (``dpo.reward``, ``reward_contrast``,
``chosen_like_real``, ``pair_within_style``, the guards, ...). For each, the lab ranks the round's candidates
by that reward, builds the pairs by those rules (the pairs stage's own code), and reports what DPO would be
taught, measured by what is not the reward:

- ``auc``: the headroom: how often a real held-out piece out-rewards a candidate of its prompt (0.5: the
  reward cannot tell samples from real music, nothing to climb);
- ``pairs``; ``direction`` / ``direction_min``: whether chosen − rejected points where real − candidates
  points on the standardised music statistics (mean and worst prompt; ``pair_checks.direction``);
- ``similarity``: the chosen set's music similarity to the real pieces (mean overlapped area), beside the
  candidates' (``similarity/candidates``): a reward whose chosen are further from real music than the
  candidates teaches the policy to move away from it;
- ``fidelity``: the share of the chosen that the statistics classifier puts in their own prompt (the
  candidates' share under the table);
- ``js_meter``: the chosen's metre mix against the real pieces'; ``bars``: their length against the real;
- ``meter_fill``: the share of the chosen's bars that fill the meter;
- ``judge_agrees``: the share of pairs whose chosen the independent judge also scores higher, and
  ``judge_rank``: the rank correlation of reward and judge over the candidates.

It answers in seconds, so a user spends rounds only on settings that point toward real music.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from base import atomic
from base.typed_config import ConfigError, from_dict, to_dict
from evaluators.meter import fill_share
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout
from pipelines.campaign.music_metrics import RealMusic
from pipelines.campaign.pair_checks import metre_divergence, prompt_checks
from pipelines.campaign.pairs import choose, reward_of, with_rewards
from pipelines.campaign.protocol import auc
from pipelines.dpo.config import DPORoundConfig

# The settings tried when none are given: NotaGen's score, the rewards that keep a prompt's variety, and the
# pair rules that keep its metres and lengths, alone and together (each on top of the campaign's own guards).
DEFAULT_SETTINGS: list[dict[str, Any]] = [
    {"name": "campaign"},
    {"name": "centroid", "reward": "centroid", "reward_contrast": 0.0, "chosen_like_real": []},
    {"name": "knn5", "reward": "knn", "reward_k": 5, "reward_contrast": 0.0, "chosen_like_real": []},
    {"name": "centroid+contrast", "reward": "centroid", "reward_contrast": 1.0, "chosen_like_real": []},
    {"name": "knn5+contrast", "reward": "knn", "reward_k": 5, "reward_contrast": 1.0, "chosen_like_real": []},
    {"name": "centroid+metre", "reward": "centroid", "reward_contrast": 0.0, "chosen_like_real": ["meter"]},
    {"name": "knn5+metre", "reward": "knn", "reward_k": 5, "reward_contrast": 0.0, "chosen_like_real": ["meter"]},
    {
        "name": "knn5+metre+length/within",
        "reward": "knn",
        "reward_k": 5,
        "reward_contrast": 0.0,
        "chosen_like_real": ["meter", "length"],
        "pair_within_style": True,
    },
    {
        "name": "knn5+contrast+metre/within",
        "reward": "knn",
        "reward_k": 5,
        "reward_contrast": 1.0,
        "chosen_like_real": ["meter"],
        "pair_within_style": True,
    },
]
COLUMNS = (
    "pairs",
    "auc",
    "direction",
    "direction_min",
    "similarity",
    "fidelity",
    "js_meter",
    "bars",
    "meter_fill",
    "judge_agrees",
    "judge_rank",
)


def setting(base: DPORoundConfig, changes: dict[str, Any]) -> tuple[str, DPORoundConfig]:
    """(name, the ``dpo:`` section with ``changes``); a field that does not exist or a bad value is a
    ``ConfigError`` naming it."""
    changes = dict(changes)
    name = str(changes.pop("name", "") or ", ".join(f"{k}={v}" for k, v in sorted(changes.items())) or "campaign")
    unknown = sorted(set(changes) - set(to_dict(base)))
    if unknown:
        raise ConfigError(f"lab setting {name!r}: dpo.{unknown[0]} is not a field of the dpo section")
    return name, from_dict(DPORoundConfig, {**to_dict(base), **changes}, "dpo")


def _rank_correlation(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 3:
        return math.nan
    rx, ry = np.argsort(np.argsort(x[keep])), np.argsort(np.argsort(y[keep]))
    return float(np.corrcoef(rx, ry)[0, 1])


def _mean(values: Iterable[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return float(np.mean(known)) if known else math.nan


def evaluate_setting(
    cfg: DPORoundConfig,
    samples: dict[str, dict],
    scores: list[dict],
    real: list[dict],
    real_texts: dict[str, str],
    round_: int,
    reference: tuple[np.ndarray, list[str]] | None,
    music: RealMusic,
) -> dict[str, float]:
    """One setting's row of the lab (``COLUMNS``)."""
    rows = with_rewards(scores, cfg, reference)
    real_rows = with_rewards(real, cfg, reference)
    pairs, _ = choose(samples, rows, cfg, round_, real_rows, real_texts)
    by_id = {r["id"]: r for r in rows}
    prompts = sorted({r["prompt"] for r in rows})
    aucs, checks, judge_hits, fidelities, fills, base_fidelity = [], {}, [], [], [], []
    clf = music.classifier()
    for p in prompts:
        mine = [r for r in rows if r["prompt"] == p]
        aucs.append(auc([reward_of(r) for r in real_rows if r["prompt"] == p], [reward_of(r) for r in mine]))
        these = [x for x in pairs if x.prompt == p]
        chosen = [by_id[i] for i in sorted({x.chosen for x in these})]
        rejected = [by_id[i] for i in sorted({x.rejected for x in these})]
        if not these:
            continue
        checks[p] = prompt_checks(music, p, chosen, rejected, mine)
        checks[p]["js_meter"] = metre_divergence(chosen, music.pieces(p))
        judge_hits += [by_id[x.chosen]["judge_score"] > by_id[x.rejected]["judge_score"] for x in these]
        with_music = [r for r in chosen if r.get("music")]
        if clf is not None and with_music:
            fidelities.append(float(np.mean(clf.own(with_music))))
            base_fidelity.append(float(np.mean(clf.own([r for r in mine if r.get("music")]))))
        fills.append(fill_share(chosen))
    directions = [c["direction"] for c in checks.values() if not math.isnan(c["direction"])]
    return {
        "pairs": float(len(pairs)),
        "auc": _mean(aucs),
        "direction": _mean(directions),
        "direction_min": min(directions) if directions else math.nan,
        "similarity": _mean(c["similarity/chosen"] for c in checks.values()),
        "similarity/candidates": _mean(c["similarity/candidates"] for c in checks.values()),
        "fidelity": _mean(fidelities),
        "fidelity/candidates": _mean(base_fidelity),
        "js_meter": _mean(c["js_meter"] for c in checks.values()),
        "js_meter/candidates": _mean(c["js_meter/candidates"] for c in checks.values()),
        "bars": _mean(c["bars/chosen"] for c in checks.values()),
        "bars/real": _mean(c["bars/real"] for c in checks.values()),
        "meter_fill": _mean(fills),
        "judge_agrees": float(np.mean(judge_hits)) if judge_hits else math.nan,
        "judge_rank": _rank_correlation([reward_of(r) for r in rows], [r.get("judge_score", math.nan) for r in rows]),
    }


def run_lab(
    base: DPORoundConfig,
    settings: list[dict[str, Any]],
    load: Callable[[], tuple[dict, list[dict], list[dict], dict, int]],
    reference: Callable[[], tuple[np.ndarray, list[str]]],
    music: RealMusic,
) -> list[tuple[str, dict[str, float]]]:
    """Every setting's row. ``load()`` gives the round's samples, score rows, the real pieces' score rows
    and texts, and the round number; ``reference()`` the evaluator's training pieces (asked for only when a
    setting's reward needs them)."""
    samples, scores, real, real_texts, round_ = load()
    configs = [setting(base, s) for s in settings]
    ref = reference() if any(c.reward != "centroid" or c.reward_contrast for _, c in configs) else None
    return [
        (name, evaluate_setting(cfg, samples, scores, real, real_texts, round_, ref, music)) for name, cfg in configs
    ]


def format_lab(rows: list[tuple[str, dict[str, float]]]) -> str:
    """The lab's rows as aligned text, with the candidates' own level under the columns that have one."""
    headers = ["setting", *COLUMNS]
    lines = [headers]
    for name, r in rows:
        lines.append(
            [name]
            + [
                "-" if math.isnan(r.get(c, math.nan)) else f"{r[c]:.0f}" if c == "pairs" else f"{r[c]:.2f}"
                for c in COLUMNS
            ]
        )
    if rows:
        first = rows[0][1]
        level = {
            "similarity": "similarity/candidates",
            "fidelity": "fidelity/candidates",
            "js_meter": "js_meter/candidates",
            "bars": "bars/real",
        }
        lines.append(
            ["(candidates; real bars)"]
            + [f"{first[level[c]]:.2f}" if c in level and not math.isnan(first[level[c]]) else "" for c in COLUMNS]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    )


def candidate_rounds(root: Path) -> list[int]:
    """The rounds of a campaign folder whose candidates are scored."""
    layout = Layout(root)
    rounds = []
    for k in layout.rounds():
        if (layout.scores(k) / SCORES_FILE).is_file() and (layout.samples(k) / SAMPLES_FILE).is_file():
            rounds.append(k)
    return rounds


def lab_campaign(
    root: Path, base: DPORoundConfig, evaluator_dir: str, center: bool, settings: list[dict[str, Any]], round_: int
) -> list[tuple[str, dict[str, float]]]:
    """The lab on round ``round_`` of the campaign folder ``root`` (its candidates, real pieces, corpus
    statistics and evaluator)."""
    layout = Layout(root)

    def load() -> tuple[dict, list[dict], list[dict], dict, int]:
        samples = {s["id"]: s for s in atomic.read_jsonl(layout.samples(round_) / SAMPLES_FILE)}
        scores = atomic.read_jsonl(layout.scores(round_) / SCORES_FILE)
        real = atomic.read_jsonl(layout.real / SCORES_FILE)
        texts = {r["id"]: r.get("interleaved", "") for r in atomic.read_jsonl(layout.real / SAMPLES_FILE)}
        return samples, scores, real, texts, round_

    def reference() -> tuple[np.ndarray, list[str]]:
        from evaluators.evaluator import Reference

        ref, _ = Reference.load(Path(evaluator_dir) / "reference.npz").scoring(center)
        train = ref.select(("train",))
        return train.features, train.prompts

    return run_lab(base, settings, load, reference, RealMusic(atomic.read_jsonl(layout.real_music)))
