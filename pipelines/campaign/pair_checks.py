"""Know before you train: do a round's pairs point toward the prompt's real music?

DPO moves the policy from its rejected pieces toward its chosen ones. Per prompt, on the music statistics
standardised by the prompt's real training pieces (``music_metrics.FEATURES``, no network):

- **direction**: the cosine between chosen − rejected (their mean statistics) and real − candidates (the
  real pieces' mean minus the round's candidates'): +1 when the pairs push exactly where the real music
  lies, 0 when they push sideways, −1 when they push away from it;
- **metres**: the Jensen-Shannon divergence of the chosen pieces' time signatures from the real pieces' mix
  (the candidates' own divergence beside it: a reward that favours one metre narrows the chosen's mix);
- **length**: the chosen pieces' mean length in bars against the real pieces'.
- **similarity**: the chosen set's music similarity to the real pieces (mean overlapped area), beside that of
  random candidate sets of the same size (a smaller set's density is spikier, so sizes must match).

The campaign logs these for every round before DPO runs, and ``dpo.direction_guard`` can warn about or drop
a prompt whose pairs point away (the reward lab, ``clampdpo campaign lab``, reads the same numbers for
settings that were never trained).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable

import numpy as np

from evaluators.music_stats import js_divergence
from pipelines.campaign.music_metrics import FEATURES, RealMusic, has_music, scalars, similarity_draws


def standardised(rows: Iterable[dict], real: list[dict]) -> np.ndarray:
    """Rows' statistics in units of the real pieces' spread (nan kept)."""
    x, r = scalars(rows), scalars(real)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(r, axis=0), np.nanstd(r, axis=0)
    return (x - mean) / np.where(np.isnan(std) | (std <= 0), 1.0, std)


def _mean(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0) if len(x) else np.full(len(FEATURES), np.nan)


def direction(chosen: list[dict], rejected: list[dict], candidates: list[dict], real: list[dict]) -> float:
    """cos(chosen − rejected, real − candidates) on standardised statistics; nan when either is unknown."""
    chosen, rejected = [r for r in chosen if has_music(r)], [r for r in rejected if has_music(r)]
    candidates = [r for r in candidates if has_music(r)]
    if not chosen or not rejected or not candidates or not real:
        return math.nan
    push = _mean(standardised(chosen, real)) - _mean(standardised(rejected, real))
    need = _mean(standardised(real, real)) - _mean(standardised(candidates, real))
    keep = ~(np.isnan(push) | np.isnan(need))
    a, b = push[keep], need[keep]
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 1e-12 else math.nan


def metre_divergence(rows: list[dict], real: list[dict]) -> float:
    """Jensen-Shannon divergence of the rows' time signatures from the real pieces'."""
    mine = Counter(r.get("time_signature") or "" for r in rows)
    theirs = Counter(r.get("time_signature") or "" for r in real)
    names = sorted(set(mine) | set(theirs))
    return js_divergence([mine[n] for n in names], [theirs[n] for n in names])


def _bars(rows: list[dict]) -> float:
    x = scalars([r for r in rows if has_music(r)])
    return float(np.nanmean(x[:, FEATURES.index("bars")])) if len(x) else math.nan


def set_similarity(real: RealMusic, prompt: str, rows: list[dict], size: int | None = None, draws: int = 40) -> float:
    """The music similarity of ``rows`` to the prompt's real pieces; with ``size``, the mean over ``draws`` seeded
    subsets of that many rows: a set's similarity falls with its size (fewer kernels, a spikier density), so
    the chosen are compared with candidate sets as small as they are."""
    rows = [r for r in rows if has_music(r)]
    if not rows:
        return math.nan
    if size is None or size >= len(rows):
        return float(similarity_draws(real, prompt, scalars(rows), np.ones((1, len(rows))))[0])
    rng = np.random.default_rng(0)
    weights = np.zeros((draws, len(rows)))
    for d in range(draws):
        weights[d, rng.choice(len(rows), size=size, replace=False)] = 1.0
    return float(np.nanmean(similarity_draws(real, prompt, scalars(rows), weights)))


def prompt_checks(
    real: RealMusic, prompt: str, chosen: list[dict], rejected: list[dict], candidates: list[dict]
) -> dict[str, float]:
    """The checks of one prompt's pairs (score rows of its chosen, rejected and all candidates)."""
    pieces = real.pieces(prompt)
    return {
        "direction": direction(chosen, rejected, candidates, pieces),
        "js_meter/chosen": metre_divergence(chosen, pieces) if chosen else math.nan,
        "js_meter/candidates": metre_divergence(candidates, pieces) if candidates else math.nan,
        "bars/chosen": _bars(chosen),
        "bars/real": _bars(pieces),
        "similarity/chosen": set_similarity(real, prompt, chosen),
        # candidate sets of the chosen's size: the level the chosen would reach by chance
        "similarity/candidates": set_similarity(real, prompt, candidates, sum(1 for r in chosen if has_music(r))),
    }


def summarise(per_prompt: dict[str, dict[str, float]]) -> dict[str, float]:
    """The round's figures under stable names (``pairs/...``): means over prompts, and the worst direction."""
    out: dict[str, float] = {}
    names = sorted({k for v in per_prompt.values() for k in v})
    for name in names:
        values = [v[name] for v in per_prompt.values() if not math.isnan(v.get(name, math.nan))]
        out[f"pairs/{name}"] = float(np.mean(values)) if values else math.nan
    directions = [v["direction"] for v in per_prompt.values() if not math.isnan(v.get("direction", math.nan))]
    out["pairs/direction_min"] = min(directions) if directions else math.nan
    return out
