"""``campaign compare``: rounds × metrics of one or more campaigns, as a table and a PNG plot."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from base import atomic
from pipelines.campaign.artifacts import write_png
from pipelines.campaign.layout import Layout
from pipelines.campaign.metrics import format_table, migrate, summary

PLOTTED = [
    ("train/clamp/mean", "CLaMP score (training prompts)"),
    ("train/judge/mean", "judge score (training prompts)"),
    ("train/meter_fill", "bars filling the meter"),
    ("heldout/clamp/mean", "CLaMP score (held-out prompts)"),
]


def read_rounds(campaign_dir: str | Path) -> tuple[list[dict[str, float]], list[str]]:
    """Metrics of every evaluated round in round order, and a line for each metrics.json that is damaged
    (left out; ``status`` reports damage rather than stopping at it)."""
    folder = Path(campaign_dir)
    if not (folder / "campaign.json").is_file():
        raise FileNotFoundError(f"{folder}: not a campaign folder (no campaign.json)")
    rows, unreadable = [], []
    layout = Layout(folder)
    for f in map(layout.metrics, layout.evaluated_rounds()):
        try:
            row = migrate(json.loads(f.read_text(encoding="utf-8"))["metrics"])
            float(row["round"])
            rows.append(row)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            why = " ".join(str(err).split())[:80]
            unreadable.append(f"{f}: damaged ({why}); `clampdpo campaign resume {folder}` rebuilds it")
    rows.sort(key=lambda r: r["round"])
    return rows, unreadable


def load_rounds(campaign_dir: str | Path) -> list[dict[str, float]]:
    """Metrics of every evaluated round of a campaign folder, in round order; a damaged one is an error."""
    rows, unreadable = read_rounds(campaign_dir)
    if unreadable:
        raise ValueError(unreadable[0])
    return rows


def last_round_details(campaign_dir: str | Path) -> dict[str, Any]:
    """What the verdict names beside the metrics (``metrics.verdict``): the last evaluated round's per-prompt
    music view, the prompts of each group, and each group's commonest metre among its samples; empty where a
    file is missing or unreadable (the verdict then speaks without the names)."""
    folder = Path(campaign_dir)
    out: dict[str, Any] = {}
    try:
        last = Layout(folder).metrics(Layout(folder).evaluated_rounds()[-1])
        out["per_prompt_music"] = json.loads(last.read_text(encoding="utf-8")).get("per_prompt_music") or {}
        plan = json.loads((folder / "prompts.json").read_text(encoding="utf-8"))
        out["groups"] = {
            "train": [p["key"] for p in plan.get("train", [])],
            "heldout": [p["key"] for p in plan.get("heldout", [])],
        }
        scores = atomic.read_jsonl(last.parent / "eval" / "scores" / "scores.jsonl")
        top = {}
        for group, keys in out["groups"].items():
            metres = Counter(r.get("time_signature") for r in scores if r["prompt"] in keys and r.get("time_signature"))
            if metres:
                top[group] = metres.most_common(1)[0][0]
        out["top_metre"] = top
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        pass
    return out


def compare_text(campaigns: dict[str, list[dict[str, float]]]) -> str:
    parts = []
    for name, rows in campaigns.items():
        parts.append(f"{name}\n{format_table(rows) if rows else '(no round evaluated yet)'}")
        text = summary(rows, last_round_details(name))
        if text:
            parts[-1] += "\n" + text
    return "\n\n".join(parts)


def plot(campaigns: dict[str, list[dict[str, float]]], path: str | Path) -> Path:
    """CLaMP and judge scores, meter fill and held-out CLaMP across rounds, one line per campaign (the
    intervals as bands where recorded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.4))
    for ax, (key, title) in zip(axes, PLOTTED):
        for name, rows in campaigns.items():
            kept = [r for r in rows if not math.isnan(r.get(key, math.nan))]
            if kept:
                line = ax.plot([r["round"] for r in kept], [r[key] for r in kept], marker="o", label=name)[0]
                low, high = key.replace("/mean", "/ci_low"), key.replace("/mean", "/ci_high")
                if key.endswith("/mean") and all(low in r for r in kept):
                    ax.fill_between(
                        [r["round"] for r in kept],
                        [r[low] for r in kept],
                        [r[high] for r in kept],
                        color=line.get_color(),
                        alpha=0.15,
                    )
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return write_png(fig, path)
