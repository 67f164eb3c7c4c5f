"""Simple statistics of the notes, compared between samples and real pieces: measures no network computes.

Three histograms per piece, read from its music21 score: pitch classes (12 bins), melodic intervals between
consecutive notes of a part (−12…+12 semitones, larger leaps in the end bins: 25 bins), and note lengths (in
quarter notes, binned at the common values). A set of pieces is compared with the real pieces of its prompt
by the Jensen-Shannon divergence of the summed histograms (bits: 0 = the same distribution, 1 = disjoint).
And whether the piece can be read by music21's own ABC parser at all.

``describe`` adds the scalar statistics of a piece (``SCALARS``: Yang & Lerch's kind of "On the evaluation of
generative models in music", 2020), which pipelines/campaign/music_metrics.py compares per prompt with the
real pieces by the overlapped area of their densities. Where music21 has the metric (its jSymbolic
features: range, pitch-class variety, mean melodic interval, stepwise motion) it computes it; the rest are
written here, each in one line: muspy has pitch-class entropy and scale consistency, but its music21 reader
no longer runs on music21 ≥ 9 and it has had no release since 2022.
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


# Bumped whenever a statistic is computed differently: cached statistics of a corpus's pieces are keyed by it
MUSIC_VERSION = 1
# name → what it measures (README "Music statistics"); every value is a float, nan when the piece has no notes
SCALARS = {
    "pitch_range": "highest minus lowest pitch, semitones (music21 jSymbolic RangeFeature)",
    "pitch_classes": "pitch classes used at least once (music21 jSymbolic PitchClassVarietyFeature)",
    "pitch_class_entropy": "Shannon entropy of the pitch classes, bits (≤ log2 12)",
    "scale_consistency": "largest share of notes inside one major or natural minor scale (muspy's definition)",
    "mean_interval": "mean absolute melodic interval, semitones (music21 jSymbolic AverageMelodicIntervalFeature)",
    "step_share": "share of melodic intervals that are steps of 1-2 semitones (jSymbolic StepwiseMotionFeature)",
    "notes_per_bar": "notes (a chord counts once) per bar of each voice",
    "mean_duration": "mean note length, quarter notes",
    "bars": "bars of the longest voice",
}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


def scale_consistency(pitch_classes: list[int]) -> float:
    """The largest share of the notes (a 12-bin pitch-class histogram) that lie in one major or natural minor
    scale, over the 24 scales: 1 for a diatonic tune, lower for chromatic writing."""
    total = sum(pitch_classes)
    if not total:
        return math.nan
    best = 0
    for root in range(12):
        for steps in (_MAJOR, _MINOR):
            best = max(best, sum(pitch_classes[(root + s) % 12] for s in steps))
    return best / total


def entropy(counts: Iterable[float]) -> float:
    """Shannon entropy (bits) of a histogram; nan when it is empty."""
    c = np.asarray(list(counts), dtype=np.float64)
    if c.sum() <= 0:
        return math.nan
    p = c[c > 0] / c.sum()
    return float(-(p * np.log2(p)).sum())


def describe(score: Any) -> dict[str, float]:
    """The scalar statistics (``SCALARS``) of a music21 score; nan where a statistic needs notes it lacks."""
    from music21 import features
    from music21.features import jSymbolic

    out = dict.fromkeys(SCALARS, math.nan)
    hist = note_stats(score)
    parts = list(score.parts) or [score]
    notes = [n for part in parts for n in part.recurse().notes if n.pitches]
    if not notes:
        return out
    instance = features.DataInstance(score)
    for name, extractor in (
        ("pitch_range", jSymbolic.RangeFeature),
        ("pitch_classes", jSymbolic.PitchClassVarietyFeature),
        ("mean_interval", jSymbolic.AverageMelodicIntervalFeature),
        ("step_share", jSymbolic.StepwiseMotionFeature),
    ):
        try:
            out[name] = float(extractor(instance).extract().vector[0])
        except Exception:  # music21 raises when the piece lacks what the feature reads (one note: no interval)
            out[name] = math.nan
    out["pitch_class_entropy"] = entropy(hist["pitch_class"])
    out["scale_consistency"] = scale_consistency(hist["pitch_class"])
    bars = [len(part.getElementsByClass("Measure")) for part in parts]
    voice_bars = sum(bars)
    out["notes_per_bar"] = len(notes) / voice_bars if voice_bars else math.nan
    out["mean_duration"] = float(np.mean([float(n.duration.quarterLength) for n in notes]))
    out["bars"] = float(max(bars)) if bars else math.nan
    return out


def piece_music(interleaved: str) -> dict[str, Any]:
    """A real (or any) piece's statistics read the way a sample's are when it is scored: its time signature,
    and, when it converts to a music21 score (abc2xml, as validity reads it), its note histograms and
    scalars (``stats`` and ``music`` None otherwise)."""
    from evaluators.meter import time_signature
    from evaluators.validity import check_validity

    out: dict[str, Any] = {"time_signature": time_signature(interleaved), "stats": None, "music": None}
    try:
        v = check_validity(interleaved)
        if v.parses:
            out["stats"], out["music"] = note_stats(v.score), describe(v.score)
    except Exception:  # a piece that cannot be read has no statistics; the caller counts it as such
        pass
    return out


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


def music21_reads_of(row: dict) -> bool | None:
    """A score row's answer to "does music21's own ABC reader read it?" (None: not asked). Rows scored before
    the idea had one name call it ``parses_abc``."""
    return row.get("music21_reads", row.get("parses_abc"))


def music21_reads(standard_abc: str) -> tuple[bool, str]:
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
