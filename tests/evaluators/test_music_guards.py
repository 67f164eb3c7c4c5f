"""Guards that are not the reward, on pieces constructed so the answer is known: bars that fill the meter,
music21's own ABC reader, note statistics against real pieces, and the corruptions that mimic them."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from base.abc.score import parse_interleaved
from evaluators.corrupt import bar_lengths, cut_ending, octave_leaps, stutter
from evaluators.meter import fill_share, meter_fill, meter_length
from evaluators.music_stats import atypicality, js_divergence, music21_reads, note_stats

HEAD = "L:1/8\nM:3/4\nK:G\nV:1 treble\n"


def test_meter_lengths():
    assert meter_length("3/4") == Fraction(3, 4) and meter_length("C") == 1 and meter_length("C|") == 1
    assert meter_length("(2+3)/8") == Fraction(5, 8) and meter_length("none") is None
    # what a generating model may write in a header is no meter, and no crash
    assert meter_length("0/4") is None and meter_length("3/0") is None
    assert math.isnan(meter_fill("L:0/8\nM:0/4\nK:C\nV:1\n[V:1]c8|\n[V:1][L:1/0]c8|\n").rate)


def test_full_bars_pickups_and_broken_bars():
    full = HEAD + "[V:1]G2 A2 B2|\n[V:1]c6|\n[V:1]B2 (3ABc d2|\n"
    assert meter_fill(full) == type(meter_fill(full))(3, 3)
    # a pickup at the start and the bar completing it at the end are allowed
    assert meter_fill(HEAD + "[V:1]D2|\n[V:1]G2 A2 B2|\n[V:1]c4|\n").rate == 1.0
    # a 3/4 tune with bars of 7, 5 and 9 eighths: none fills the meter (the first and last are too long)
    broken = HEAD + "[V:1]G2 A2 B2 c|\n[V:1]A2 B2 c|\n[V:1]G2 A2 B2 c2 d|\n[V:1]G6|\n"
    assert meter_fill(broken).full == 1 and meter_fill(broken).bars == 4
    # two short neighbours that add up to a bar (a phrase starting on an upbeat) count as full
    assert meter_fill(HEAD + "[V:1]G6|\n[V:1]A4|\n[V:1]B2|\n[V:1]c6|\n").rate == 1.0


def test_every_voice_is_checked_and_inline_meter_changes_follow():
    two = (
        "L:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 bass\n"
        + "[V:1]c8|[V:2]C,8|\n" * 2
        + "[V:1]c8|[V:2]C,6|\n"
        + "[V:1]c8|[V:2]C,8|\n"
    )
    assert (meter_fill(two).bars, meter_fill(two).full) == (8, 7)
    change = "L:1/8\nM:4/4\nK:C\nV:1 treble\n[V:1]c8|\n[V:1][M:3/4]c6|\n[V:1]c6|\n[V:1]c6|\n"
    assert meter_fill(change).rate == 1.0
    assert math.isnan(meter_fill("L:1/8\nM:none\nK:C\nV:1 treble\n[V:1]c8|\n").rate)  # free meter: nothing checked


def test_music21_reads_guard():
    ok, _ = music21_reads("L:1/8\nM:3/4\nK:G\nV:1\nG2 A2 B2|c6|]\n")
    assert ok
    bad, reason = music21_reads("L:1/8\nM:3/4\nK:G\nV:1\n")
    assert not bad and "no notes" in reason


def test_note_statistics_and_their_divergence():
    score = parse_interleaved(HEAD + "[V:1]G2 A2 B2|\n[V:1]G6|\n")
    s = note_stats(score)
    assert sum(s["pitch_class"]) == 4 and s["pitch_class"][7] == 2  # G G A B
    assert s["interval"][12 + 2] == 2 and s["interval"][12 - 4] == 1  # G→A, A→B up a tone; B→G down 4
    assert s["duration"][3] == 3 and s["duration"][6] == 1  # three quarter notes and a dotted half
    assert js_divergence([1, 0], [1, 0]) == 0.0 and js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert math.isnan(js_divergence([0, 0], [1, 0]))


def test_atypicality_reads_note_lengths_and_intervals_not_pitch_classes():
    eighths = note_stats(parse_interleaved(HEAD + "[V:1]GABc dBGA|\n[V:1]BcdB cAFD|\n"))
    same_in_another_key = note_stats(parse_interleaved(HEAD + "[V:1]ABcd ecAB|\n[V:1]cdec dBGE|\n"))
    sixteenths = note_stats(parse_interleaved(HEAD + "[V:1]G/A/B/c/ d/B/G/A/ B/c/d/B/ c/A/F/D/|\n"))
    assert atypicality(eighths, eighths) == 0.0
    # a transposed tune is as typical as the tune (pitch classes differ, lengths and intervals do not) ...
    assert atypicality(same_in_another_key, eighths) < 0.05
    # ... while the same tune in sixteenth notes is as far as note lengths can be
    assert atypicality(sixteenths, eighths) == pytest.approx(1.0)
    assert math.isnan(atypicality(None, eighths))


def test_training_corruptions_break_what_they_say():
    piece = HEAD + "".join(f"[V:1]{n}2 A2 B2|\n" for n in "GABcdefgab") + "[V:1]c6|]\n"
    assert meter_fill(piece).rate == 1.0
    assert meter_fill(bar_lengths(piece, random.Random(0), p=1.0)).rate < 0.5  # most bars lose their length
    looped = stutter(piece, random.Random(0)).splitlines()
    assert max(looped.count(line) for line in looped if line.startswith("[V:")) >= 3
    assert cut_ending(piece, random.Random(0)).count("[V:1]") <= 9 and "|]" not in cut_ending(piece, random.Random(0))
    leaps = note_stats(parse_interleaved(octave_leaps(piece, random.Random(0), p=0.5)))["interval"]
    assert leaps[0] + leaps[-1] > 0  # octave (or larger) leaps appear


def test_fill_share_pools_bars_over_pieces():
    # 3 of 4 bars and 1 of 12: pooled 4/16, not the mean of the two shares (0.417)
    rows = [{"meter_bars": 4, "meter_full": 3}, {"meter_bars": 12, "meter_full": 1}, {"meter_bars": 0}, {}]
    assert fill_share(rows) == 0.25
    assert math.isnan(fill_share([{"meter_bars": 0, "meter_full": 0}])) and math.isnan(fill_share([]))
    piece = "L:1/8\nM:2/4\nK:C\nV:1 treble\n" + "".join(f"[V:1]c{n}|\n" for n in (4, 3, 4, 4))  # bar 2 is short
    fill = meter_fill(piece)
    assert fill_share([{"meter_bars": fill.bars, "meter_full": fill.full}]) == 3 / 4
