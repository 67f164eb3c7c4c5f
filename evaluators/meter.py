"""Do the bars fill the meter? A guard read off the ABC text, not from any model.

Real pieces of the corpus almost always fill every bar of every voice with exactly the time signature's
length; generated pieces often do not (a 3/4 tune with bars of 7, 5 and 9 eighths) even when their voices
agree with each other, which the alignment check of validity.py cannot see. A bar counts as full when its
notes last the meter's length. Pickups are allowed: the first and the last bar of a piece may be shorter, and
so may two neighbouring bars that add up to one (a phrase or a repeat that starts on an upbeat, as in every
Bach chorale). The meter and unit length come from the header and follow inline ``[M:...]`` /
``[L:...]`` changes. A bar whose duration cannot be worked out counts as not full; a piece in free meter
(``M:none``) has no bars to check.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_VOICE = re.compile(r"\[V:([^\]]+)\]")
_INLINE = re.compile(r"\[([LM]):([^\]]*)\]")
_HEADER_METER = re.compile(r"^M:\s*(\S*)", re.MULTILINE)
_BARLINE_END = re.compile(r"(:*\|+\]?:*|:*\[\|:*|::)\s*(\[?\d+(,\d+)*)?\s*$")


def time_signature(text: str) -> str:
    """A piece's time signature as its header gives it (the first ``M:`` line), '' when it has none."""
    m = _HEADER_METER.search(text)
    return m.group(1) if m else ""


@dataclass(frozen=True)
class MeterFill:
    bars: int  # voice-bars checked
    full: int  # of those, bars that fill the meter (pickup and final bar allowed to be shorter)

    @property
    def rate(self) -> float:
        return fill_rate(self.full, self.bars)


def meter_length(meter: str) -> Fraction | None:
    """The length of a bar in whole notes (``3/4`` → 3/4, ``C`` → 1, ``C|`` → 1); None for free meter."""
    meter = meter.strip()
    if meter in ("C", "C|"):
        return Fraction(1)
    m = re.fullmatch(r"\(?(\d+(?:\+\d+)*)\)?\s*/\s*(\d+)", meter)
    if not m or int(m.group(2)) == 0:
        return None
    length = Fraction(sum(int(x) for x in m.group(1).split("+")), int(m.group(2)))
    return length if length > 0 else None  # a generated M:0/4 is no meter


def _unit(text: str) -> Fraction | None:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        return None
    return Fraction(int(m.group(1)), int(m.group(2)))


def _bar_duration(bar: str) -> Fraction | None:
    """Duration of one voice's bar in units of L (abctoolkit's reading of ABC note lengths)."""
    from abctoolkit.duration import calculate_bartext_duration

    body = _BARLINE_END.sub("", bar.strip())
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dur = calculate_bartext_duration(body)
    except Exception:  # unreadable note lengths: the bar is not counted as full
        return None
    return Fraction(dur) if dur is not None else None


def bar_ratios(interleaved: str) -> list[list[tuple[str, Fraction | None]]]:
    """For every body line, each voice-bar's (voice, length as a share of the meter): 1 when it fills it, None
    when its notes cannot be read; a bar in free meter (``M:none``) is left out."""
    meter: Fraction | None = Fraction(1)
    unit = Fraction(1, 8)
    out: list[list[tuple[str, Fraction | None]]] = []
    for line in interleaved.splitlines():
        if not line.startswith("[V:"):
            if not out and line.startswith("M:"):
                meter = meter_length(line[2:])
            elif not out and line.startswith("L:"):
                unit = _unit(line[2:]) or unit
            continue
        row: list[tuple[str, Fraction | None]] = []
        parts = _VOICE.split(line)  # ['', voice, text, voice, text, ...]
        for voice, text in zip(parts[1::2], parts[2::2]):
            for field, value in _INLINE.findall(text):  # a change in this bar applies to it
                if field == "M":
                    meter = meter_length(value)
                else:
                    unit = _unit(value) or unit
            if meter is None:
                continue
            dur = _bar_duration(text)
            row.append((voice, None if dur is None else dur * unit / meter))
        out.append(row)
    return out


def fill_share(rows: Iterable[Mapping[str, Any]]) -> float:
    """The share of voice-bars that fill the meter, pooled over score rows (their ``meter_bars`` and
    ``meter_full``: a long piece weighs by its bars); NaN when no bar was checked. The one formula behind
    every ``meter_fill`` the table, the pairs, the report and the reward lab show."""
    bars = full = 0
    for row in rows:
        bars += int(row.get("meter_bars") or 0)
        full += int(row.get("meter_full") or 0)
    return fill_rate(full, bars)


def fill_rate(full: int, bars: int) -> float:
    """``full`` of ``bars`` voice-bars fill the meter: their share, NaN when no bar was checked."""
    return full / bars if bars else math.nan


def meter_fill(interleaved: str) -> MeterFill:
    """How many voice-bars of an interleaved piece fill the meter."""
    lengths: dict[str, list[Fraction | None]] = {}  # voice → the length of each of its bars, as a share of the meter
    for row in bar_ratios(interleaved):
        for voice, ratio in row:
            lengths.setdefault(voice, []).append(ratio)
    bars = full = 0
    for seq in lengths.values():
        for i, x in enumerate(seq):
            bars += 1
            if x is None:
                continue
            if x == 1:
                full += 1
            elif 0 < x < 1:  # a short bar: a pickup at either end, or completed by a neighbour
                edge = i == 0 or i == len(seq) - 1
                neighbours = [seq[j] for j in (i - 1, i + 1) if 0 <= j < len(seq)]
                full += edge or any(y is not None and x + y == 1 for y in neighbours)
    return MeterFill(bars, full)
