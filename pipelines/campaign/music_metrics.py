"""Does a round's music get closer to its prompt's real music? Measures that no network computes.

Three measures per prompt, each beside the same figure for the prompt's real held-out pieces (the ceiling:
real music against real music):

- **similarity**: for each scalar statistic of ``evaluators.music_stats.SCALARS``, the overlapped area of
  the samples' density and the prompt's real training pieces' density (Gaussian kernels of one bandwidth per
  prompt and statistic, read off the real pieces; Yang & Lerch 2020), averaged over the statistics: 1 = the
  same distributions, 0 = disjoint;
- **fidelity**: the share of samples that a classifier fit on the statistics of the real training pieces of
  every prompt of the corpus puts in their own prompt (multinomial logistic regression, scikit-learn);
- **two-sample AUC**: how well a classifier (cross-validated logistic regression on the same statistics) tells
  the samples from the prompt's real pieces: 0.5 = indistinguishable, 1 = told apart every time.

Every round samples the same seeds, so a round is compared with round 0 **paired**: the bootstrap draws the
same seeds for both rounds (similarity, a property of a set, is computed on each draw), and a sample's
fidelity is compared with the same seed's in round 0.

The classifier sees the scalars, the note-length histogram, the pitch-class histogram turned so that its
commonest class comes first (key-free, as music21's jSymbolic PitchClassDistribution) and the time
signature; the similarity sees the scalars only (the metres' mix is ``js/meter`` of the round metrics).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluators.music_stats import SCALARS, SIZES
from pipelines.campaign.protocol import BOOTSTRAP_RESAMPLES, CONFIDENCE, Interval, bootstrap_mean, paired

FEATURES = tuple(SCALARS)
MIN_CLASS_PIECES = 10  # a prompt with fewer real training pieces than this is no class of the classifier
GRID = 512  # points of the density grid


def has_music(row: dict) -> bool:
    """Whether a score row carries the statistics of a piece with notes."""
    m = row.get("music") or {}
    return not all(_nan(m.get(f)) for f in FEATURES)


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def scalars(rows: Iterable[dict]) -> np.ndarray:
    """Rows × FEATURES (nan where a statistic is missing)."""
    out = [[math.nan if _nan((r.get("music") or {}).get(f)) else float(r["music"][f]) for f in FEATURES] for r in rows]
    return np.asarray(out, dtype=np.float64).reshape(-1, len(FEATURES))


# ---------------------------------------------------------------------- similarity (overlapped area)


@dataclass
class Density:
    """The real pieces' density of one statistic of one prompt, and the kernel bandwidth both sides use."""

    values: np.ndarray
    bandwidth: float

    @classmethod
    def of(cls, values: np.ndarray, floor: float) -> Density:
        v = values[~np.isnan(values)]
        spread = float(v.std()) if len(v) > 1 else 0.0
        # Scott's rule on the real pieces, floored: a statistic every real piece shares (7 pitch classes in a
        # set of diatonic tunes) still gets a kernel that a sample one step away overlaps a little
        return cls(v, max(spread * len(v) ** -0.2 if len(v) else 0.0, floor))

    def grid(self, *others: np.ndarray) -> np.ndarray:
        both = np.concatenate([self.values, *[o[~np.isnan(o)] for o in others]])
        return np.linspace(both.min() - 4 * self.bandwidth, both.max() + 4 * self.bandwidth, GRID)

    def kernels(self, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """One normalised Gaussian per value on ``grid`` (rows of zeros for nan values)."""
        z = (grid[None, :] - np.nan_to_num(values)[:, None]) / self.bandwidth
        k = np.exp(-0.5 * z * z) / (self.bandwidth * math.sqrt(2 * math.pi))
        k[np.isnan(values)] = 0.0
        return k


def overlaps(density: Density, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Overlapped area of the real density and of each weighting of ``values`` (rows of ``weights``: a draw's
    count of each value); nan for a draw with no value."""
    grid = density.grid(values)
    dx = grid[1] - grid[0]
    real = density.kernels(density.values, grid).mean(0)
    valid = (~np.isnan(values)).astype(np.float64)
    w = weights * valid[None, :]
    total = w.sum(1)
    # in place: a draw matrix is thousands of grids, and a fresh array per step cost more than the arithmetic
    mine = w @ density.kernels(values, grid)
    np.divide(mine, np.maximum(total, 1e-12)[:, None], out=mine)
    np.minimum(mine, real[None, :], out=mine)
    out = mine.sum(1) * dx
    out[total <= 0] = math.nan
    return out


def _floors(corpus: list[dict]) -> np.ndarray:
    """Each statistic's smallest bandwidth: a twentieth of its spread over the whole corpus."""
    x = scalars([r for r in corpus if has_music(r)])
    spread = np.nanstd(x, axis=0) if len(x) else np.ones(len(FEATURES))
    return np.where(np.isnan(spread) | (spread <= 0), 1e-3, spread / 20)


@dataclass
class RealMusic:
    """The real pieces' statistics a round is measured against: every corpus piece with notes, by prompt and
    split, plus the classifier fit on the training pieces of every prompt."""

    rows: list[dict]
    floors: np.ndarray = field(init=False)
    _densities: dict[str, list[Density]] = field(init=False, default_factory=dict)
    _classifier: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rows = [r for r in self.rows if has_music(r)]
        self.floors = _floors(self.rows)

    def pieces(self, prompt: str, split: str = "train") -> list[dict]:
        return [r for r in self.rows if r["prompt"] == prompt and r.get("split") == split]

    def densities(self, prompt: str) -> list[Density] | None:
        """One density per statistic of the prompt's real training pieces; None without two of them."""
        if prompt not in self._densities:
            x = scalars(self.pieces(prompt))
            if len(x) < 2:
                return None
            self._densities[prompt] = [Density.of(x[:, j], float(self.floors[j])) for j in range(len(FEATURES))]
        return self._densities[prompt]

    def classifier(self) -> Fidelity | None:
        """The fidelity classifier (fit once); None when the corpus has fewer than two prompts to tell apart."""
        if self._classifier is None:
            self._classifier = Fidelity.fit([r for r in self.rows if r.get("split") == "train"]) or False
        return self._classifier or None


def similarity_draws(real: RealMusic, prompt: str, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean overlapped area over the statistics for each draw (rows of ``weights``) of a prompt's samples
    (``values``: samples × FEATURES); nan where the prompt has no real density or a draw has no sample."""
    dens = real.densities(prompt)
    if dens is None or not len(values):
        return np.full(len(weights), math.nan)
    per = np.stack([overlaps(d, values[:, j], weights) for j, d in enumerate(dens)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw where every statistic is nan stays nan
        return np.nanmean(per, axis=0)


def per_statistic(real: RealMusic, prompt: str, values: np.ndarray) -> dict[str, float]:
    """Overlapped area of each statistic of a prompt's samples with its real pieces (no draws)."""
    dens = real.densities(prompt)
    if dens is None or not len(values):
        return dict.fromkeys(FEATURES, math.nan)
    ones = np.ones((1, len(values)))
    return {f: float(overlaps(d, values[:, j], ones)[0]) for j, (f, d) in enumerate(zip(FEATURES, dens))}


def _quantiles(draws: np.ndarray, point: float, n: int) -> Interval:
    """The draws' percentile interval moved to sit around ``point``: a draw repeats some samples, which makes
    its density spikier and its overlap smaller, so the draws of a similarity sit below the similarity of
    the set itself; their spread is what the interval needs (a gain's draws barely move: both rounds repeat
    the same seeds)."""
    draws = draws[~np.isnan(draws)]
    if math.isnan(point) or not len(draws):
        return Interval(point, math.nan, math.nan, n)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [tail, 1 - tail]) - draws.mean() + point
    return Interval(point, float(low), float(high), n)


def _by_prompt(rows: Iterable[dict]) -> dict[str, dict[str, dict]]:
    """prompt → seed key → row."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        out[r["prompt"]][str(r.get("seed", r.get("id")))] = r
    return out


def similarity(
    real: RealMusic, rows: list[dict], round0: list[dict] | None = None, seed: int = 0
) -> tuple[Interval, Interval | None, dict[str, float]]:
    """(similarity with its bootstrap interval, its paired gain over round 0 or None, per prompt): the mean
    over prompts of the mean overlapped area; the draws resample each prompt's seeds, the same ones in both
    rounds."""
    rng = np.random.default_rng(seed)
    now, before = _by_prompt(rows), _by_prompt(round0 or [])
    mine, theirs, points, points0, per_prompt = [], [], [], [], {}
    for prompt in sorted(now):
        keys = sorted(now[prompt]) if round0 is None else sorted(now[prompt].keys() & before.get(prompt, {}).keys())
        if not keys:
            continue
        draws = rng.multinomial(len(keys), [1 / len(keys)] * len(keys), size=BOOTSTRAP_RESAMPLES).astype(np.float64)
        ones = np.ones((1, len(keys)))
        x = scalars(now[prompt][k] for k in keys)
        points.append(float(similarity_draws(real, prompt, x, ones)[0]))
        per_prompt[prompt] = points[-1]
        mine.append(similarity_draws(real, prompt, x, draws))
        if round0 is not None:
            x0 = scalars(before[prompt][k] for k in keys)
            points0.append(float(similarity_draws(real, prompt, x0, ones)[0]))
            theirs.append(similarity_draws(real, prompt, x0, draws))
    if not mine:
        return Interval(math.nan, math.nan, math.nan, 0), None, {}
    n = sum(len(v) for v in now.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = _quantiles(np.nanmean(np.stack(mine), 0), float(np.nanmean(points)), n)
        if round0 is None:
            return level, None, per_prompt
        gain = np.nanmean(np.stack(mine), 0) - np.nanmean(np.stack(theirs), 0)
        return level, _quantiles(gain, float(np.nanmean(points) - np.nanmean(points0)), n), per_prompt


def real_similarity(real: RealMusic, prompts: Iterable[str]) -> dict[str, float]:
    """The ceiling: each prompt's real held-out pieces against its real training pieces."""
    out = {}
    for p in prompts:
        held = real.pieces(p, "eval")
        if held:
            out[p] = float(similarity_draws(real, p, scalars(held), np.ones((1, len(held))))[0])
    return out


# ---------------------------------------------------------------------- fidelity and the two-sample test


def metres(rows: Iterable[dict]) -> list[str]:
    """The time signatures a classifier tells apart: those of at least 1% of the pieces."""
    counts = Counter(r.get("time_signature") or "" for r in rows)
    total = sum(counts.values()) or 1
    return sorted(m for m, n in counts.items() if n / total >= 0.01)


def profile(row: dict, metre_names: list[str]) -> np.ndarray:
    """What the classifiers see of a piece: scalars, note-length shares, key-free pitch-class shares, metre."""
    x = scalars([row])[0]
    stats = row.get("stats") or {}
    dur = np.asarray(stats.get("duration") or [0] * SIZES["duration"], dtype=np.float64)
    pcs = np.asarray(stats.get("pitch_class") or [0] * 12, dtype=np.float64)
    pcs = np.roll(pcs, -int(pcs.argmax())) if pcs.sum() else pcs
    ts = row.get("time_signature") or ""
    onehot = [float(ts == m) for m in metre_names]
    return np.concatenate([x, dur / max(dur.sum(), 1), pcs / max(pcs.sum(), 1), onehot])


@dataclass
class Fidelity:
    """Which prompt a piece's statistics belong to: a classifier fit on the real training pieces."""

    model: Any
    metre_names: list[str]
    fill: np.ndarray  # each input's mean over the training pieces, for a statistic a piece lacks

    @classmethod
    def fit(cls, train: list[dict]) -> Fidelity | None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        counts = Counter(r["prompt"] for r in train)
        keep = [r for r in train if counts[r["prompt"]] >= MIN_CLASS_PIECES]
        if len({r["prompt"] for r in keep}) < 2:
            return None
        names = metres(keep)
        x = np.stack([profile(r, names) for r in keep])
        fill = np.nan_to_num(np.nanmean(x, axis=0))
        x = np.where(np.isnan(x), fill, x)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        model.fit(x, [r["prompt"] for r in keep])
        return cls(model, names, fill)

    def inputs(self, rows: list[dict]) -> np.ndarray:
        x = np.stack([profile(r, self.metre_names) for r in rows])
        return np.where(np.isnan(x), self.fill, x)

    @property
    def prompts(self) -> list[str]:
        return [str(c) for c in self.model.classes_]

    def own(self, rows: list[dict]) -> list[bool]:
        """For each piece, whether the classifier puts it in its own prompt."""
        if not rows:
            return []
        return [str(p) == r["prompt"] for p, r in zip(self.model.predict(self.inputs(rows)), rows)]


def fidelity(
    real: RealMusic, rows: list[dict], round0: list[dict] | None = None
) -> tuple[Interval, Interval | None, dict[str, dict[str, float]]]:
    """(share of samples put in their own prompt, its paired gain over round 0, per prompt: share, its
    interval, paired gain and its interval, and the real held-out pieces' share)."""
    clf = real.classifier()
    rows = [r for r in rows if has_music(r)]
    if clf is None or not rows:
        return Interval(math.nan, math.nan, math.nan, 0), None, {}
    hits = {_key(r): float(v) for r, v in zip(rows, clf.own(rows))}
    before = [r for r in round0 or [] if has_music(r)]
    hits0 = {_key(r): float(v) for r, v in zip(before, clf.own(before))}
    level = bootstrap_mean(list(hits.values()))
    gain = paired(hits, hits0) if round0 is not None else None
    per: dict[str, dict[str, float]] = {}
    for prompt in sorted({r["prompt"] for r in rows}):
        mine = {k: v for k, v in hits.items() if k[0] == prompt}
        out = bootstrap_mean(list(mine.values())).as_metrics("fidelity")
        if round0 is not None:
            out.update(paired(mine, {k: v for k, v in hits0.items() if k[0] == prompt}).as_metrics("fidelity_gain"))
        held = real.pieces(prompt, "eval")
        out["real/fidelity"] = float(np.mean(clf.own(held))) if held else math.nan
        per[prompt] = out
    return level, gain, per


def real_fidelity(real: RealMusic, prompts: Iterable[str]) -> float:
    """The real held-out pieces' share put in their own prompt (pooled over ``prompts``)."""
    clf = real.classifier()
    held = [r for p in prompts for r in real.pieces(p, "eval")]
    return float(np.mean(clf.own(held))) if clf is not None and held else math.nan


def _key(row: dict) -> tuple[str, str]:
    return row["prompt"], str(row.get("seed", row.get("id")))


def two_sample_auc(real: RealMusic, prompt: str, rows: list[dict], folds: int = 5, seed: int = 0) -> float:
    """How well a cross-validated classifier on the statistics tells ``rows`` from the prompt's real training
    pieces (ROC AUC of its held-out predictions): 0.5 = indistinguishable; nan with too few pieces."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = real.classifier()
    mine = [r for r in rows if has_music(r)]
    theirs = real.pieces(prompt)
    if clf is None or len(mine) < folds or len(theirs) < folds:
        return math.nan
    x = clf.inputs(mine + theirs)
    y = np.array([1] * len(mine) + [0] * len(theirs))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input column in a fold is harmless here
        proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


# ---------------------------------------------------------------------- a group's metrics


def music_metrics(
    real: RealMusic, rows: list[dict], round0: list[dict] | None
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """A group of prompts' music metrics (names without the group prefix) and the per-prompt view:

    music/similarity/{mean,ci_low,ci_high,n}   mean overlapped area of the statistics with the real pieces'
    music_gain/...                            its paired difference to round 0
    music/oa/<statistic>                      each statistic's overlapped area (mean over prompts)
    fidelity/..., fidelity_gain/...            share of samples the classifier puts in their own prompt
    fidelity/falling                          prompts whose share fell (paired interval below zero)
    two_sample_auc                            samples vs real pieces (0.5 = indistinguishable)
    real/music/similarity, real/fidelity, real/two_sample_auc   the same for the real held-out pieces
    """
    out: dict[str, float] = {}
    prompts = sorted({r["prompt"] for r in rows})
    level, gain, sims = similarity(real, rows, round0)
    out.update(level.as_metrics("music/similarity"))
    out.update((gain or Interval(0.0, 0.0, 0.0, level.n)).as_metrics("music_gain"))
    x_by = {p: scalars(r for r in rows if r["prompt"] == p) for p in prompts}
    stat = {p: per_statistic(real, p, x_by[p]) for p in prompts}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for f in FEATURES:
            out[f"music/oa/{f}"] = float(np.nanmean([stat[p][f] for p in prompts])) if prompts else math.nan
    ceiling = real_similarity(real, prompts)
    out["real/music/similarity"] = float(np.mean(list(ceiling.values()))) if ceiling else math.nan
    fid, fid_gain, per = fidelity(real, rows, round0)
    out.update(fid.as_metrics("fidelity"))
    out.update((fid_gain or Interval(0.0, 0.0, 0.0, fid.n)).as_metrics("fidelity_gain"))
    out["real/fidelity"] = real_fidelity(real, prompts)
    # prompts whose own-prompt share fell: the paired interval of the fall lies wholly below zero
    out["fidelity/falling"] = float(sum(1 for v in per.values() if v.get("fidelity_gain/ci_high", 0.0) < 0))
    aucs = {p: two_sample_auc(real, p, [r for r in rows if r["prompt"] == p]) for p in prompts}
    real_aucs = {p: two_sample_auc(real, p, real.pieces(p, "eval")) for p in prompts}
    for name, values in (("two_sample_auc", aucs), ("real/two_sample_auc", real_aucs)):
        known = [v for v in values.values() if not math.isnan(v)]
        out[name] = float(np.mean(known)) if known else math.nan
    view: dict[str, dict[str, float]] = {}
    for p in prompts:
        view[p] = {
            "music/similarity": sims.get(p, math.nan),
            "real/music/similarity": ceiling.get(p, math.nan),
            "two_sample_auc": aucs[p],
            "real/two_sample_auc": real_aucs[p],
            **{f"music/oa/{f}": v for f, v in stat[p].items()},
            **per.get(p, {}),
        }
    return out, view
