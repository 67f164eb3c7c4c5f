"""Simple statistics of the notes, compared between samples and real pieces: a guard that is not the reward.

Three histograms per piece, read from its music21 score: pitch classes (12 bins), melodic intervals between
consecutive notes of a part (−12…+12 semitones, larger leaps in the end bins: 25 bins), and note lengths (in
quarter notes, binned at the common values). A set of pieces is compared with the real pieces of its prompt
by the Jensen-Shannon divergence of the summed histograms (bits: 0 = the same distribution, 1 = disjoint).
And whether the piece can be read by music21's own ABC parser at all.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

STATS = ("pitch_class", "interval", "duration")
DURATION_BINS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # quarter lengths; others go to a last bin
SIZES = {"pitch_class": 12, "interval": 25, "duration": len(DURATION_BINS) + 1}


def note_stats(score: Any) -> dict[str, list[int]]:
    """Histograms (counts) of a music21 score's pitch classes, melodic intervals and note lengths."""
    counts = {name: [0] * n for name, n in SIZES.items()}
    parts = list(score.parts) or [score]
    for part in parts:
        previous = None
        for note in part.recurse().notes:
            pitches = list(note.pitches)
            if not pitches:
                continue
            top = max(p.midi for p in pitches)
            for p in pitches:
                counts["pitch_class"][p.pitchClass] += 1
            if previous is not None:
                counts["interval"][min(12, max(-12, top - previous)) + 12] += 1
            previous = top
            q = float(note.duration.quarterLength)
            bin_ = next((i for i, b in enumerate(DURATION_BINS) if abs(q - b) < 1e-6), len(DURATION_BINS))
            counts["duration"][bin_] += 1
    return counts


def js_divergence(p: Iterable[float], q: Iterable[float]) -> float:
    """Jensen-Shannon divergence (bits) between two histograms; nan when either is empty."""
    a, b = np.asarray(list(p), dtype=np.float64), np.asarray(list(q), dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        return math.nan
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> float:
        keep = x > 0
        return float((x[keep] * np.log2(x[keep] / y[keep])).sum())

    return 0.5 * kl(a, m) + 0.5 * kl(b, m)


def summed(stats: Iterable[dict[str, list[int]] | None], name: str) -> list[int]:
    """One histogram for a set of pieces (pieces without statistics left out)."""
    total = [0] * SIZES[name]
    for s in stats:
        if s:
            total = [x + y for x, y in zip(total, s[name])]
    return total


def parses_with_music21_abc(standard_abc: str) -> tuple[bool, str]:
    """Whether music21's own ABC reader reads a standard (voice-block) ABC piece and finds notes in it."""
    import music21

    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            # %abc-2.1: accidentals carry through the bar, as ABC 2.1 says (music21 reads 1.6 otherwise)
            score = music21.converter.parse("%abc-2.1\nX:1\n" + standard_abc, format="abc")
        if not score.recurse().notes:
            return False, "music21 (ABC) finds no notes"
        return True, ""
    except Exception as err:  # music21's ABC reader raises many kinds of errors on bad input
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return False, f"music21 (ABC) cannot read it: {type(err).__name__}: {first}"


# Key-free statistics: a piece's pitch classes depend on its key, which real pieces of a prompt vary widely
RHYTHM_AND_MOTION = ("duration", "interval")


def atypicality(stats: dict[str, list[int]] | None, reference: dict[str, list[int]]) -> float:
    """How far one piece's note lengths and melodic intervals are from a set of pieces (``reference``: their
    summed histograms): the larger Jensen-Shannon divergence of the two; nan when the piece has no notes."""
    if not stats:
        return math.nan
    values = [js_divergence(stats[name], reference[name]) for name in RHYTHM_AND_MOTION]
    return math.nan if any(math.isnan(v) for v in values) else max(values)
