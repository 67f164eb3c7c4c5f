"""Files a round leaves for people: best, median and worst samples as ABC, MusicXML and MIDI, and score
histograms."""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from base import atomic

log = logging.getLogger(__name__)


def abc_to_midi(interleaved: str) -> bytes | None:
    """MIDI of an interleaved piece (via standard ABC → MusicXML → music21); None when it does not convert."""
    import tempfile

    from base.abc.score import parse_interleaved

    try:
        score = parse_interleaved(interleaved)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "piece.mid"
            score.write("midi", fp=str(path))
            return path.read_bytes()
    except Exception as err:  # a generated piece may be unplayable; the ABC is still saved
        log.debug("no MIDI: %s", err)
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "prompt"


def abc_to_musicxml(interleaved: str) -> bytes | None:
    """MusicXML of an interleaved piece (standard ABC → abc2xml); None when it does not convert."""
    from base.abc.convert import abc_to_musicxml as convert
    from base.abc.interleave import deinterleave

    try:
        return convert("X:1\n" + "".join(deinterleave(interleaved.splitlines(keepends=True))))
    except Exception as err:  # a generated piece may not convert; the ABC is still saved
        log.debug("no MusicXML: %s", err)
        return None


def best_and_worst(samples: dict[str, dict], scores: list[dict], out_dir: Path, per_prompt: int = 1) -> list[Path]:
    """Write the ``per_prompt`` best and worst scored samples of every prompt, and the median one (the samples
    the report lists), each as ABC, MusicXML and MIDI where it converts; returns the files written."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for s in scores:
        if not math.isnan(s["clamp_score"]):
            by_prompt[s["prompt"]].append(s)
    written = []
    for prompt, rows in sorted(by_prompt.items()):
        rows.sort(key=lambda r: (-r["clamp_score"], r["id"]))
        picks = [("best", r) for r in rows[:per_prompt]] + [("worst", r) for r in rows[::-1][:per_prompt]]
        picks.append(("median", rows[len(rows) // 2]))
        for kind, r in picks:
            text = samples[r["id"]].get("interleaved") or ""
            stem = out_dir / f"{_slug(prompt)}.{kind}.{r['id']}"
            atomic.write_text(stem.with_suffix(".abc"), f"% {prompt}: CLaMP score {r['clamp_score']:.4f}\n{text}")
            written.append(stem.with_suffix(".abc"))
            xml = abc_to_musicxml(text) if text else None
            if xml:
                atomic.write_bytes(stem.with_suffix(".musicxml"), xml)
                written.append(stem.with_suffix(".musicxml"))
            midi = abc_to_midi(text) if text else None
            if midi:
                atomic.write_bytes(stem.with_suffix(".mid"), midi)
                written.append(stem.with_suffix(".mid"))
    return written


def score_histogram(series: dict[str, list[float]], path: Path, title: str) -> Path:
    """One PNG with a histogram per named series of CLaMP scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in series.items():
        v = [x for x in values if not math.isnan(x)]
        if v:
            ax.hist(v, bins=20, alpha=0.6, label=f"{name} (n={len(v)})")
    ax.set_xlabel("CLaMP score (cosine to the prompt's centroid)")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return write_png(fig, path)


def write_png(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
    return Path(path)
