"""Is a generated piece valid music? NotaGen's checks on the CLaMP-ready (interleaved) form.

A piece is valid when (1) it unrotates to standard ABC, (2) abctoolkit's alignment check passes on the
unrotated text (every voice has as many bars, and each bar lasts as long in every voice), and (3) the
score converts to MusicXML (abc2xml) that music21 parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from base.abc.interleave import InterleaveError, deinterleave
from base.abc.score import bar_durations_aligned, roundtrip


@dataclass
class Validity:
    parses: bool
    aligned: bool
    reason: str = ""
    score: Any = field(default=None, repr=False, compare=False)  # the parsed music21 score, when it parses

    @property
    def valid(self) -> bool:
        return self.parses and self.aligned


def check_validity(interleaved_text: str | None) -> Validity:
    if not interleaved_text:
        return Validity(False, False, "no interleaved form")
    lines = interleaved_text.splitlines(keepends=True)
    try:
        standard = deinterleave(lines)
    except InterleaveError as err:
        return Validity(False, False, str(err))
    aligned = bar_durations_aligned(standard)
    parsed = roundtrip(interleaved_text)
    reason = "; ".join(
        r
        for r in (
            "" if aligned else "bars not aligned across voices",
            "" if parsed.parsed_bars is not None else parsed.reason,
        )
        if r
    )
    return Validity(parsed.parsed_bars is not None, aligned, reason, parsed.score)
