"""Round metrics from score records: stable names, read the same in MLflow, metrics.json and compare.

Every round samples two groups of prompts with the same seeds as round 0: the **training** prompts (with
fresh evaluation seeds, never the candidates' seeds) and the **held-out** prompts (never trained on). For each
group a round reports the CLaMP and judge means with 95% bootstrap intervals, their paired difference to
round 0 (seed by seed), and guards that are not the reward, each beside the same figure for the group's real
held-out pieces (the eval split of the corpus, scored the same way):

    {group}/clamp/{mean,ci_low,ci_high,n}     {group}/judge/...           the reward and the independent judge
    {group}/clamp_gain/..., {group}/judge_gain/...                       paired difference to round 0
    {group}/auc_real_vs_samples      P(a real piece outscores a sample of its prompt): the reward's headroom
    {group}/above_real               share of samples scoring above their prompt's real mean (over-optimisation)
    {group}/validity, meter_fill, music21_reads, plagiarism, finished    guard rates
    {group}/diversity                mean pairwise cosine of samples within a prompt (real: {group}/real/...)
    {group}/js/{pitch_class,interval,duration}  Jensen-Shannon divergence of note statistics from real pieces
    {group}/js/meter                 the same for the time signatures (a policy collapsing onto one metre)
    {group}/frechet                  Fréchet distance of the features to the prompt's ground truth
    {group}/bars                     mean voice-bars per piece (a policy that learns to stop early)
    {group}/real/{clamp,judge,validity,meter_fill,music21_reads,diversity,bars}   the same for the real pieces
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from evaluators.meter import fill_share
from evaluators.music_stats import music21_reads_of
from pipelines.campaign.music_metrics import RealMusic, music_metrics
from pipelines.campaign.protocol import Interval, auc, bootstrap_mean, paired

GROUPS = {"train": "training prompts", "heldout": "held-out prompts"}
STAT_NAMES = ("pitch_class", "interval", "duration")


def _rate(rows: list[dict], ok: Callable[[dict], bool | None]) -> float:
    values = [ok(r) for r in rows]
    known = [bool(v) for v in values if v is not None]
    return sum(known) / len(known) if known else math.nan


def _by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r["prompt"]].append(r)
    return out


def _diversity(rows: list[dict]) -> float:
    """Mean pairwise cosine of the features within each prompt, averaged over prompts (lower = more varied)."""
    from evaluators.guards import mean_pairwise_cosine

    values = []
    for group in _by_prompt(rows).values():
        feats = np.array([r["feature"] for r in group if r.get("feature") and not np.isnan(r["feature"]).any()])
        if len(feats) >= 2:
            values.append(mean_pairwise_cosine(feats))
    return float(np.mean(values)) if values else math.nan


def _prompt_mean(rows: list[dict], real: list[dict], distance: Callable[[list[dict], list[dict]], float]) -> float:
    """``distance`` between each prompt's samples and its real pieces, averaged over the prompts (nan skipped)."""
    real_of = _by_prompt(real)
    values = [distance(group, real_of.get(prompt, [])) for prompt, group in _by_prompt(rows).items()]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _js(rows: list[dict], real: list[dict]) -> dict[str, float]:
    from evaluators.music_stats import js_divergence, summed

    def stat(name: str) -> Callable[[list[dict], list[dict]], float]:
        return lambda a, b: js_divergence(
            summed((r.get("stats") for r in a), name), summed((r.get("stats") for r in b), name)
        )

    def meters(a: list[dict], b: list[dict]) -> float:
        mine, theirs = (Counter(r["time_signature"] for r in x if r.get("time_signature")) for x in (a, b))
        names = sorted(set(mine) | set(theirs))
        return js_divergence([mine[n] for n in names], [theirs[n] for n in names])

    out = {name: _prompt_mean(rows, real, stat(name)) for name in STAT_NAMES}
    out["meter"] = _prompt_mean(rows, real, meters)
    return out


def _key(row: dict) -> str:
    return f"{row['prompt']}/{row.get('seed')}"


def group_metrics(
    rows: list[dict], real: list[dict], round0: list[dict] | None, ref: tuple[np.ndarray, list[str]] | None = None
) -> dict[str, float]:
    """The metrics of one group of prompts (names without the group prefix); see the module docstring."""
    out: dict[str, float] = {}
    for name, key in (("clamp", "clamp_score"), ("judge", "judge_score")):
        out.update(bootstrap_mean([r[key] for r in rows]).as_metrics(name))
        gain = paired({_key(r): r[key] for r in rows}, {_key(r): r[key] for r in round0}) if round0 else None
        out.update((gain or Interval(0.0, 0.0, 0.0, len(rows))).as_metrics(f"{name}_gain"))
        out[f"real/{name}"] = float(np.nanmean([r[key] for r in real])) if real else math.nan
    real_of = _by_prompt(real)
    aucs, weights, above, scored = [], [], 0, 0
    for prompt, group in _by_prompt(rows).items():
        real_scores = [r["clamp_score"] for r in real_of.get(prompt, [])]
        sample_scores = [r["clamp_score"] for r in group if not math.isnan(r["clamp_score"])]
        value = auc(real_scores, sample_scores)
        if not math.isnan(value):
            aucs.append(value)
            weights.append(len(sample_scores))
            level = float(np.nanmean(real_scores))
            above += sum(s > level for s in sample_scores)
            scored += len(sample_scores)
    out["auc_real_vs_samples"] = float(np.average(aucs, weights=weights)) if aucs else math.nan
    out["above_real"] = above / scored if scored else math.nan
    for prefix, subset in (("", rows), ("real/", real)):
        out[f"{prefix}validity"] = _rate(subset, lambda r: r.get("valid"))
        out[f"{prefix}meter_fill"] = fill_share(subset)
        out[f"{prefix}music21_reads"] = _rate(subset, music21_reads_of)
        out[f"{prefix}diversity"] = _diversity(subset)
        out[f"{prefix}bars"] = float(np.mean([int(r.get("meter_bars", 0)) for r in subset])) if subset else math.nan
    out["plagiarism"] = _rate(rows, lambda r: r.get("plagiarism"))
    out["finished"] = _rate(rows, lambda r: r.get("finished", True))
    out["samples"] = float(len(rows))
    out["real/pieces"] = float(len(real))
    out.update({f"js/{k}": v for k, v in _js(rows, real).items()})
    if ref is not None:
        from evaluators.guards import set_metrics

        feats = np.array([r["feature"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
        out["frechet"] = set_metrics(feats, [r["prompt"] for r in rows], ref[0], ref[1])["frechet/mean_per_prompt"]
    return out


def round_metrics(
    scores: list[dict],
    real: list[dict],
    round0: list[dict] | None,
    groups: dict[str, set[str]],
    ref: tuple[np.ndarray, list[str]] | None = None,
) -> dict[str, float]:
    """Every group's metrics of a round, prefixed by the group (``train/``, ``heldout/``)."""
    out: dict[str, float] = {}
    for group, prompts in groups.items():
        rows = [s for s in scores if s["prompt"] in prompts]
        if not rows:
            continue
        mine = group_metrics(
            rows,
            [r for r in real if r["prompt"] in prompts],
            [s for s in round0 if s["prompt"] in prompts] if round0 is not None else None,
            ref,
        )
        out.update({f"{group}/{k}": v for k, v in mine.items()})
    return out


def round_music(
    scores: list[dict], round0: list[dict] | None, groups: dict[str, set[str]], music: RealMusic
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Every group's music metrics (``music_metrics.music_metrics``: statistics, fidelity, two-sample AUC),
    prefixed by the group, and the same per prompt (no prefix: a prompt is in one group)."""
    out: dict[str, float] = {}
    view: dict[str, dict[str, float]] = {}
    if not music.rows:  # a campaign made before the corpus's statistics existed
        return out, view
    for group, prompts in groups.items():
        rows = [s for s in scores if s["prompt"] in prompts]
        if not rows:
            continue
        before = [s for s in round0 if s["prompt"] in prompts] if round0 is not None else None
        mine, per = music_metrics(music, rows, before)
        out.update({f"{group}/{k}": v for k, v in mine.items()})
        view.update(per)
    return out, view


DPO_KEYS = {
    "rewards/chosen": "rewards/chosen",
    "rewards/rejected": "rewards/rejected",
    "rewards/margins": "rewards/margins",
    "rewards/accuracies": "rewards/accuracies",
    "train_loss": "dpo/loss",
    "dpop/penalty": "dpop/penalty",
    "logps/chosen": "logps/chosen",
    "logps/rejected": "logps/rejected",
}


def training_metrics(candidate_scores: list[dict], pairs: dict, dpo: dict) -> dict[str, float]:
    """What round k trained on and how DPO went: the candidates' CLaMP mean and guard rates, the pair count
    (from the pairs stage's record) and the DPO summary's metrics under stable names."""
    out = bootstrap_mean([s["clamp_score"] for s in candidate_scores]).as_metrics("candidates/clamp")
    out["candidates/validity"] = _rate(candidate_scores, lambda r: r.get("valid"))
    out["candidates/meter_fill"] = fill_share(candidate_scores)
    out["pairs/count"] = float(pairs.get("pairs/count", 0))
    # the pairs stage's checks of its pairs against the real music (pair_checks.py), when it made them
    out.update({k: float(v) for k, v in pairs.items() if k.startswith("pairs/") and isinstance(v, (int, float))})
    out.update({name: float(dpo[key]) for key, name in DPO_KEYS.items() if key in dpo})
    return out


def per_prompt(scores: list[dict], key: str = "clamp_score") -> dict[str, float]:
    """Mean score per prompt (nan-skipping); the per-prompt view of a round."""
    by: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        if not math.isnan(s[key]):
            by[s["prompt"]].append(s[key])
    return {p: float(np.mean(v)) for p, v in sorted(by.items())}


def _interval(row: dict, name: str, signed: bool = False) -> str:
    mean = row.get(f"{name}/mean", math.nan)
    if mean is None or math.isnan(mean):
        return "-"
    sign = "+" if signed else ""
    return f"{mean:{sign}.3f} [{row[f'{name}/ci_low']:{sign}.3f}, {row[f'{name}/ci_high']:{sign}.3f}]"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


# metric names as they were before each idea had one name → their name now (``migrate``)
RENAMED_METRICS = {"parse_abc": "music21_reads"}


def migrate(metrics: dict[str, Any]) -> dict[str, Any]:
    """A round's metrics under today's names: a metrics.json written before a rename reads as a new one."""
    out = {}
    for key, value in metrics.items():
        head, _, last = key.rpartition("/")
        new = RENAMED_METRICS.get(last)
        out[f"{head}/{new}" if head and new else new or key] = value
    return out


COLUMNS = [  # (header, metric name, format): rates and distances of a group
    ("valid", "validity", "{:.2f}"),
    ("meter", "meter_fill", "{:.2f}"),
    ("m21", "music21_reads", "{:.2f}"),
    ("div", "diversity", "{:.2f}"),
    (">real", "above_real", "{:.2f}"),
    ("AUC", "auc_real_vs_samples", "{:.2f}"),
    ("JS int", "js/interval", "{:.3f}"),
    ("JS M", "js/meter", "{:.2f}"),
    ("music", "music/similarity/mean", "{:.3f}"),
    ("fid", "fidelity/mean", "{:.2f}"),
    ("2s-AUC", "two_sample_auc", "{:.2f}"),
]

# the columns real pieces have too, and the name of the real pieces' figure
REAL_COLUMNS = {
    "validity": "real/validity",
    "meter_fill": "real/meter_fill",
    "music21_reads": "real/music21_reads",
    "diversity": "real/diversity",
    "music/similarity/mean": "real/music/similarity",
    "fidelity/mean": "real/fidelity",
    "two_sample_auc": "real/two_sample_auc",
}


def _block(rows: list[dict[str, float]], group: str) -> list[list[str]]:
    """The header, the real pieces' row and one row per round of one group's block."""
    first = rows[0]
    headers = ["round", "CLaMP [95% CI]", "Δ r0 [95% CI]", "judge [95% CI]", "Δ r0 [95% CI]"]
    headers += ["music Δ r0 [95% CI]"]
    headers += [h for h, _, _ in COLUMNS] + (["pairs", "margin"] if group == "train" else [])
    real = [
        "real",
        _num(first.get(f"{group}/real/clamp"), "{:.3f}"),
        "",
        _num(first.get(f"{group}/real/judge"), "{:.3f}"),
    ]
    real += ["", ""] + [
        _num(first.get(f"{group}/{REAL_COLUMNS[m]}"), f) if m in REAL_COLUMNS else "" for _, m, f in COLUMNS
    ]
    lines = [headers, real + (["", ""] if group == "train" else [])]
    for r in rows:
        cells = [str(int(r.get("round", 0))), _interval(r, f"{group}/clamp"), _interval(r, f"{group}/clamp_gain", True)]
        cells += [_interval(r, f"{group}/judge"), _interval(r, f"{group}/judge_gain", True)]
        cells += [_interval(r, f"{group}/music_gain", True)]
        cells += [_num(r.get(f"{group}/{m}"), f) for _, m, f in COLUMNS]
        if group == "train":
            cells += [_num(r.get("pairs/count"), "{:.0f}"), _num(r.get("rewards/margins"), "{:.2f}")]
        lines.append(cells)
    return lines


def format_table(rows: list[dict[str, float]]) -> str:
    """Rounds × metrics as aligned text, one block per group of prompts, with the group's real pieces on top."""
    blocks = []
    for group, title in GROUPS.items():
        present = [r for r in rows if f"{group}/clamp/mean" in r]
        if not present:
            continue
        lines = _block(present, group)
        widths = [max(len(c[i]) for c in lines) for i in range(len(lines[0]))]
        text = "\n".join("  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in lines)
        samples, pieces = int(present[0].get(f"{group}/samples", 0)), int(present[0].get(f"{group}/real/pieces", 0))
        blocks.append(
            f"{title}: {samples} samples per round (the same seeds every round); real: {pieces} held-out pieces\n{text}"
        )
    return "\n\n".join(blocks)


def summary(rows: list[dict[str, float]], details: dict[str, Any] | None = None) -> str:
    """Round 0 → the last round, per group, in words: the reward's paired gain and the share of the gap to the
    real pieces it closed, the judge, the music statistics and fidelity, the guards beside their real level,
    and the verdict (``verdict``; ``details`` as it takes them)."""
    if len(rows) < 2:
        return ""
    first, last = rows[0], rows[-1]
    out = []
    for group, title in GROUPS.items():
        if f"{group}/clamp/mean" not in last:
            continue
        g = lambda name, row=last, group=group: row.get(f"{group}/{name}", math.nan)  # noqa: E731
        span = f"{title}, round {int(first['round'])} → {int(last['round'])}"
        if _missing(g("clamp/mean")) or _missing(g("clamp/mean", first)):
            which = "the last round" if _missing(g("clamp/mean")) else f"round {int(first['round'])}"
            out.append(
                f"{span}: no valid samples in {which} (validity {_num(g('validity'), '{:.2f}')}): nothing to compare"
            )
            continue
        start, end, real = g("clamp/mean", first), g("clamp/mean"), g("real/clamp")
        closed = (end - start) / (real - start) if real - start > 1e-9 else math.nan
        out.append(
            f"{span}: CLaMP {start:.3f} → {end:.3f} "
            f"(paired {_interval(last, f'{group}/clamp_gain', True)}; real pieces {_num(real, '{:.3f}')}, "
            f"{_num(closed * 100, '{:.0f}')}% of the gap closed); judge {_num(g('judge/mean', first), '{:.3f}')} → "
            f"{_num(g('judge/mean'), '{:.3f}')} (paired {_interval(last, f'{group}/judge_gain', True)}); music "
            f"statistics {_num(g('music/similarity/mean', first), '{:.3f}')} → "
            f"{_num(g('music/similarity/mean'), '{:.3f}')} (paired {_interval(last, f'{group}/music_gain', True)}; "
            f"real {_num(g('real/music/similarity'), '{:.3f}')}); fidelity {_num(g('fidelity/mean', first), '{:.2f}')}"
            f" → {_num(g('fidelity/mean'), '{:.2f}')} (real {_num(g('real/fidelity'), '{:.2f}')}); meter fill "
            f"{_num(g('meter_fill', first), '{:.2f}')} → {_num(g('meter_fill'), '{:.2f}')} (real "
            f"{_num(g('real/meter_fill'), '{:.2f}')}); music21 reads {_num(g('music21_reads', first), '{:.2f}')} → "
            f"{_num(g('music21_reads'), '{:.2f}')}; validity {_num(g('validity', first), '{:.2f}')} → "
            f"{_num(g('validity'), '{:.2f}')}; diversity {_num(g('diversity', first), '{:.2f}')} → "
            f"{_num(g('diversity'), '{:.2f}')} (real {_num(g('real/diversity'), '{:.2f}')}); metres' divergence "
            f"from the real pieces' {_num(g('js/meter', first), '{:.2f}')} → {_num(g('js/meter'), '{:.2f}')}; "
            f"length {_num(g('bars', first), '{:.1f}')} → {_num(g('bars'), '{:.1f}')} bars (real "
            f"{_num(g('real/bars'), '{:.1f}')})"
        )
        out.append(f"  verdict: {verdict(rows, group, details)}")
    return "\n".join(out)


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


METRE_DRIFT = 0.05  # the growth of JS M beyond which the metres count as drifting from the real pieces' mix
METRE_COLLAPSE = 0.15  # ... and beyond which they collapse onto the reward's favourite


def verdict(rows: list[dict[str, float]], group: str = "train", details: dict[str, Any] | None = None) -> str:
    """Whether the rounds made the music better, in one sentence that is true: the music improved only when
    the reward's gain is confirmed by what is not the reward (the music statistics' paired gain above zero,
    no prompt's fidelity falling, the metres' mix held); otherwise it names what diverged. ``details`` may
    give the last round's per-prompt music view (``per_prompt_music``: fidelity per prompt) and the samples'
    commonest metre per group (``top_metre``), for the names in the sentence."""
    first, last = rows[0], rows[-1]
    g = lambda name, row=last: row.get(f"{group}/{name}", math.nan)  # noqa: E731
    clamp_low, clamp_high = g("clamp_gain/ci_low"), g("clamp_gain/ci_high")
    reward = f"CLaMP {g('clamp_gain/mean'):+.2f}"
    if _missing(g("music/similarity/mean")):
        return f"{reward}; no music statistics were measured (a campaign made before them): nothing confirms it"
    music = (
        f"music statistics {g('music_gain/mean'):+.3f} [{g('music_gain/ci_low'):+.3f}, {g('music_gain/ci_high'):+.3f}]"
    )
    problems = []
    if g("music_gain/ci_high") < 0:
        problems.append(f"{music} (further from the real pieces)")
    per = (details or {}).get("per_prompt_music") or {}
    mine = set((details or {}).get("groups", {}).get(group, per))
    falling = [p for p in sorted(per) if p in mine and per[p].get("fidelity_gain/ci_high", 0.0) < 0]
    if falling:
        problems.append("fidelity falling for " + ", ".join(_fall(p, per[p]) for p in falling))
    elif g("fidelity/falling") > 0:
        problems.append(f"fidelity falling for {int(g('fidelity/falling'))} prompt(s)")
    drift = g("js/meter") - g("js/meter", first)
    if drift > METRE_DRIFT:
        top = ((details or {}).get("top_metre") or {}).get(group)
        toward = f" toward {top}" if top else ""
        how = "collapsing" if drift > METRE_COLLAPSE else "drifting"
        problems.append(f"metres {how}{toward} (JS M {g('js/meter', first):.2f} → {g('js/meter'):.2f})")
    if clamp_low > 0:
        if problems:
            return f"{reward} but {', '.join(problems)}: the reward is being gamed, the music did not improve"
        if g("music_gain/ci_low") > 0:
            return f"the music improved: {reward}, {music}, fidelity held, metres held"
        return f"{reward}, but {music}: the music statistics do not confirm it (not an improvement yet)"
    trend = "fell" if clamp_high < 0 else "did not rise"
    what = ", ".join(problems or [music])
    return f"no improvement: the reward {trend} ({reward} [{clamp_low:+.2f}, {clamp_high:+.2f}]); {what}"


def _fall(prompt: str, view: dict[str, float]) -> str:
    now = view["fidelity/mean"]
    return f"{_short(prompt)} ({now - view['fidelity_gain/mean']:.2f} → {now:.2f})"


def _short(prompt: str) -> str:
    """'Folk_Traditional, Irish_Solo melody' → 'Irish' (the part that tells prompts apart in a sentence)."""
    parts = prompt.split("_")
    composer = parts[1] if len(parts) > 1 else prompt
    return composer.split(", ")[-1] if ", " in composer else composer
