"""``campaign compare``: rounds × metrics of one or more campaigns, as a table and a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipelines.campaign.artifacts import write_png
from pipelines.campaign.metrics import format_table

PLOTTED = [
    ("clamp/mean", "CLaMP score (held-out mean)"),
    ("judge/mean", "judge score (held-out mean)"),
    ("validity/rate", "validity"),
]


def load_rounds(campaign_dir: str | Path) -> list[dict[str, float]]:
    """Metrics of every evaluated round of a campaign folder, in round order."""
    folder = Path(campaign_dir)
    if not (folder / "campaign.json").is_file():
        raise FileNotFoundError(f"{folder}: not a campaign folder (no campaign.json)")
    rows = [json.loads(f.read_text())["metrics"] for f in folder.glob("round-*/metrics.json")]
    return sorted(rows, key=lambda r: r["round"])


def compare_text(campaigns: dict[str, list[dict[str, float]]]) -> str:
    parts = []
    for name, rows in campaigns.items():
        parts.append(f"{name}\n{format_table(rows) if rows else '(no round evaluated yet)'}")
        if len(rows) > 1:
            first, last = rows[0].get("clamp/mean", math.nan), rows[-1].get("clamp/mean", math.nan)
            parts[-1] += (
                f"\nCLaMP mean: round {int(rows[0]['round'])} {first:.4f} → round "
                f"{int(rows[-1]['round'])} {last:.4f} ({last - first:+.4f})"
            )
    return "\n\n".join(parts)


def plot(campaigns: dict[str, list[dict[str, float]]], path: str | Path) -> Path:
    """CLaMP score, judge score and validity across rounds, one line per campaign."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.4))
    for ax, (key, title) in zip(axes, PLOTTED):
        for name, rows in campaigns.items():
            xs = [r["round"] for r in rows if not math.isnan(r.get(key, math.nan))]
            ys = [r[key] for r in rows if not math.isnan(r.get(key, math.nan))]
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return write_png(fig, path)
