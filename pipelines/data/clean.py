"""NotaGen's cleaning of standard ABC, before interleaving.

What is removed and why (NotaGen's data pre-processing): fields that name the piece (X: T: C: Z:) or
hold lyrics and words (W: w:) are not music and would leak the answer into a prompt-conditioned model;
%%MIDI lines and bar-number comments are layout noise; text annotations containing barlines break
bar splitting; long annotations are mostly editorial prose.
"""

from __future__ import annotations

import contextlib
import io
import re

from unidecode import unidecode

from base.errors import describe

DROPPED_FIELDS = ("X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI")
BARLINE_SYMBOLS = ("||:", ":||", "[|:", ":|]", "|]:", ":[|", "|:", "::", ":|", "[|", "||", "|]", "|")
MAX_ANNOTATION_CHARS = 40
_QUOTED = re.compile(r'"[^"]*"')
_BAR_NUMBER_COMMENT = re.compile(r"%\d+\s*$")
_REPEATED_SYMBOL = re.compile(r"([^a-zA-Z0-9])\1+")
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
# xml2abc may write a plain "|" right after a barline ("G2 || | (G/A/) |", or "A4 ||" ending one line
# and "| (c>d) |" opening the next); the doubled barline reads as an empty bar and breaks bar splitting.
_LEADING_BAR = re.compile(r"^(\s*)\|(?![|:\]\d])")
_DOUBLED_BAR = re.compile(r"(\|\]|\|\||:\||::|\|)(\s+)\|(?![|:\]\d])")
_ENDS_WITH_BAR = re.compile(r"(\||\|\]|::|\|:)\s*$")


class CleaningError(Exception):
    """The piece cannot be cleaned into aligned voices; the message is the reject reason."""


def _is_body_line(line: str) -> bool:
    return not (_FIELD_LINE.match(line) or line.startswith("%"))


def _voice_section_start(lines: list[str]) -> int:
    """Index of the bare ``V:1`` line that opens the voices' music (the last one, as abctoolkit finds it)."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "V:1":
            return i
    raise CleaningError("no voice section (V:1) found in the ABC")


def _shorten_annotation(match: str) -> str:
    if match == '""':
        return ""
    if match[1] in "^_":
        short = _REPEATED_SYMBOL.sub(r"\1", match)
        return short if len(short) <= MAX_ANNOTATION_CHARS else ""
    return match


def clean_standard_abc(text: str) -> list[str]:
    """Cleaned standard ABC lines (each ending in a newline), or CleaningError with the reason."""
    lines = [unidecode(ln.rstrip("\r\n")) + "\n" for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(DROPPED_FIELDS)]
    start = _voice_section_start(lines)
    prev_closed = False
    for i in range(start, len(lines)):
        if _is_body_line(lines[i]):
            line = _BAR_NUMBER_COMMENT.sub("", lines[i].rstrip("\n")).rstrip()
            if prev_closed:
                line = _LEADING_BAR.sub(r"\1", line)
            line = _DOUBLED_BAR.sub(r"\1\2", line)
            prev_closed = bool(_ENDS_WITH_BAR.search(line))
            lines[i] = line + "\n"
        else:
            prev_closed = False
    out = []
    for line in lines:
        if _is_body_line(line):
            line = line.replace('\\"', "")
            for quoted in _QUOTED.findall(line):
                if any(b in quoted for b in BARLINE_SYMBOLS):
                    line = line.replace(quoted, "")
            line = _QUOTED.sub(lambda m: _shorten_annotation(m.group(0)), line)
        out.append(line)
    counts = voice_bar_counts(out)
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{v}={n}" for v, n in counts.items())
        raise CleaningError(f"voices have unequal bar counts ({detail})")
    return out


def voice_bar_counts(lines: list[str]) -> dict[str, int]:
    """Bars per voice of standard ABC, as abctoolkit splits them."""
    from abctoolkit.utils import extract_barline_and_bartext_dict

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, _, bars, _ = extract_barline_and_bartext_dict(list(lines))
    except Exception as err:
        raise CleaningError(f"cannot split voices into bars: {describe(err)}") from None
    return {v: len(b) for v, b in bars.items()}
