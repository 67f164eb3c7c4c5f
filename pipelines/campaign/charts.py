"""Small SVG charts for the report: lines with interval bands, a scatter, a histogram. Plain strings, no
script and no library, so the page draws them offline and a test can read them."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
W, H, PAD = 360, 220, 36


def _scale(values: Sequence[float], low: float | None = None, high: float | None = None) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals and (low is None or high is None):  # nothing to draw (a round with no valid sample): a unit frame
        lo, hi = (0.0 if low is None else low), (1.0 if high is None else high)
    else:
        lo = min(vals) if low is None else low
        hi = max(vals) if high is None else high
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _frame(title: str, lo: float, hi: float, xs: Sequence[float], body: str, xlabel: str) -> str:
    ticks = "".join(
        f'<text x="{PAD - 4}" y="{_y(v, lo, hi):.1f}" text-anchor="end" font-size="9">{v:.2f}</text>'
        f'<line x1="{PAD}" x2="{W - 8}" y1="{_y(v, lo, hi):.1f}" y2="{_y(v, lo, hi):.1f}" stroke="#eee"/>'
        for v in (lo + (hi - lo) * k / 4 for k in range(5))
    )
    xt = "".join(
        f'<text x="{_x(x, xs):.1f}" y="{H - 14}" text-anchor="middle" font-size="9">{x:.3g}</text>' for x in xs
    )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{html.escape(title)}"><text x="{W / 2}" y="14" text-anchor="middle" '
        f'font-size="11" font-weight="bold">{html.escape(title)}</text>{ticks}{xt}<text x="{W / 2}" y="{H - 2}" '
        f'text-anchor="middle" font-size="9">{html.escape(xlabel)}</text>{body}</svg>'
    )


def _x(x: float, xs: Sequence[float]) -> float:
    lo, hi = (min(xs), max(xs)) if xs else (0, 1)
    return PAD + (W - 8 - PAD) * ((x - lo) / (hi - lo) if hi > lo else 0.5)


def _y(v: float, lo: float, hi: float) -> float:
    return H - 26 - (H - 26 - 22) * (v - lo) / (hi - lo)


def lines(title: str, series: list[dict], xlabel: str = "round", references: dict[str, float] | None = None) -> str:
    """``series``: dicts with name, x, y and optionally low/high (an interval band); ``references``: dashed
    horizontal lines (a level to reach, such as the real pieces')."""
    xs = sorted({x for s in series for x in s["x"]})
    every = [v for s in series for v in list(s["y"]) + list(s.get("low", [])) + list(s.get("high", []))]
    every += list((references or {}).values())
    lo, hi = _scale(every)
    body = []
    for k, s in enumerate(series):
        color = COLORS[k % len(COLORS)]
        pts = [(x, y) for x, y in zip(s["x"], s["y"]) if y is not None and not math.isnan(y)]
        if s.get("low") and s.get("high"):
            band = [(x, lw) for x, lw in zip(s["x"], s["low"])] + [(x, hg) for x, hg in zip(s["x"], s["high"])][::-1]
            band = [(x, v) for x, v in band if v is not None and not math.isnan(v)]
            if band:
                points = " ".join(f"{_x(x, xs):.1f},{_y(v, lo, hi):.1f}" for x, v in band)
                body.append(f'<polygon points="{points}" fill="{color}" fill-opacity="0.15" stroke="none"/>')
        if pts:
            points = " ".join(f"{_x(x, xs):.1f},{_y(y, lo, hi):.1f}" for x, y in pts)
            body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
            body += [f'<circle cx="{_x(x, xs):.1f}" cy="{_y(y, lo, hi):.1f}" r="3" fill="{color}"/>' for x, y in pts]
        label = html.escape(s["name"])
        body.append(f'<text x="{PAD + 4}" y="{30 + 11 * k}" font-size="9" fill="{color}">{label}</text>')
    for name, v in (references or {}).items():
        y = _y(v, lo, hi)
        body.append(
            f'<line x1="{PAD}" x2="{W - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" stroke-dasharray="4 3"/>'
            f'<text x="{W - 10}" y="{y - 3:.1f}" text-anchor="end" font-size="9" fill="#555">'
            f"{html.escape(name)} {v:.2f}</text>"
        )
    return _frame(title, lo, hi, xs, "".join(body), xlabel)


def scatter(title: str, points: list[tuple[float, float]], xlabel: str, ylabel: str) -> str:
    """Reward (x) against judge (y), one dot per sample, with the correlation in the title."""
    pts = [(x, y) for x, y in points if not (math.isnan(x) or math.isnan(y))]
    xlo, xhi = _scale([x for x, _ in pts])
    ylo, yhi = _scale([y for _, y in pts])
    r = float("nan")
    if len(pts) > 2:
        import numpy as np

        a = np.array(pts)
        if a[:, 0].std() > 0 and a[:, 1].std() > 0:
            r = float(np.corrcoef(a[:, 0], a[:, 1])[0, 1])
    body = "".join(
        f'<circle cx="{PAD + (W - 8 - PAD) * (x - xlo) / (xhi - xlo):.1f}" cy="{_y(y, ylo, yhi):.1f}" r="2.5" '
        f'fill="{COLORS[0]}" fill-opacity="0.6"/>'
        for x, y in pts
    )
    body += f'<text x="{PAD + 4}" y="30" font-size="9">{html.escape(ylabel)} (r = {r:.2f})</text>'
    return _frame(f"{title} (r = {r:.2f})", ylo, yhi, [xlo, xhi], body, xlabel)


def histogram(title: str, groups: dict[str, list[float]], bins: int = 20) -> str:
    """Overlaid histograms of scores, one colour per group (samples of a round, real pieces)."""
    vals = [v for g in groups.values() for v in g if not math.isnan(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    width = (hi - lo) / bins
    counts = {name: [0] * bins for name in groups}
    for name, g in groups.items():
        for v in g:
            if not math.isnan(v):
                counts[name][min(bins - 1, int((v - lo) / width))] += 1
    top = max([max(c) for c in counts.values()] + [1])
    body = []
    for k, (name, c) in enumerate(counts.items()):
        color = COLORS[k % len(COLORS)]
        bar_w = (W - 8 - PAD) / bins
        for i, n in enumerate(c):
            if n:
                h = (H - 48) * n / top
                body.append(
                    f'<rect x="{PAD + i * bar_w:.1f}" y="{H - 26 - h:.1f}" width="{bar_w - 1:.1f}" '
                    f'height="{h:.1f}" fill="{color}" fill-opacity="0.45"/>'
                )
        body.append(
            f'<text x="{PAD + 4}" y="{30 + 11 * k}" font-size="9" fill="{color}">{html.escape(name)} '
            f"(n={sum(c)})</text>"
        )
    xs = [round(lo, 2), round(hi, 2)]
    return _frame(title, 0, top, xs, "".join(body), "CLaMP score")
