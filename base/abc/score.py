"""Reading ABC as music: interleaved ABC → standard ABC → MusicXML (abc2xml) → a music21 score.

This is how a notation program sees our pieces: the corpus round trip, the validity of a generated piece
and its MIDI all go through here. abctoolkit's bar-alignment check (every bar lasts as long in every voice,
NotaGen's check) is here too.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

from base.abc.convert import ConversionError, abc_to_musicxml
from base.abc.interleave import InterleaveError, body_lines, deinterleave
from base.errors import describe


@dataclass
class RoundTrip:
    piece: str
    ok: bool
    expected_bars: int
    parsed_bars: int | None
    reason: str = ""
    score: Any = field(default=None, repr=False, compare=False)  # the music21 score, for further analysis


def parse_musicxml(xml: bytes) -> Any:
    """A music21 score of a MusicXML document (music21's warnings kept off the console)."""
    import music21

    with contextlib.redirect_stderr(io.StringIO()):
        return music21.converter.parseData(xml, format="musicxml")


def parse_interleaved(interleaved_text: str) -> Any:
    """The music21 score of an interleaved piece (deinterleave → abc2xml → music21); raises on failure."""
    standard = "".join(deinterleave(interleaved_text.splitlines(keepends=True)))
    return parse_musicxml(abc_to_musicxml("X:1\n" + standard))


def bar_count(score: Any) -> int:
    """Bars of the first part of a music21 score."""
    parts = list(score.parts) or [score]
    return len(parts[0].getElementsByClass("Measure"))


def roundtrip(interleaved_text: str, name: str = "") -> RoundTrip:
    """Parse an interleaved piece back to a score and check it has one bar per body line."""
    lines = interleaved_text.splitlines(keepends=True)
    expected = len(body_lines(lines))
    try:
        score = parse_interleaved(interleaved_text)
        bars = bar_count(score)
    except (InterleaveError, ConversionError) as err:
        return RoundTrip(name, False, expected, None, str(err))
    except Exception as err:  # music21 raises many exception types on bad MusicXML
        return RoundTrip(name, False, expected, None, f"music21 cannot parse: {describe(err)}")
    ok = bars == expected
    return RoundTrip(name, ok, expected, bars, "" if ok else f"{bars} bars parsed, {expected} expected", score)


def bar_durations_aligned(lines: list[str]) -> bool:
    """abctoolkit's check on standard ABC that every voice has as many bars and each bar lasts as long in
    every voice (NotaGen's alignment check)."""
    from abctoolkit.check import check_alignment_unrotated

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _, bar_no_equal, bar_dur_equal = check_alignment_unrotated(list(lines))
    except Exception:
        return False
    return bool(bar_no_equal and bar_dur_equal)
