"""Interleaved ABC (CLaMP 2's form) and NotaGen's training form, built on abctoolkit.

Interleaved ABC writes one line per bar holding every voice in turn (``[V:1]...|[V:2]...|``), so a
bar-level model sees all voices of a bar together. NotaGen's training form is the same but omits a
voice's bar when it holds only rests, and carries the ``%period`` / ``%composer`` /
``%instrumentation`` prompt lines on top.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from typing import Any, TypeVar

from base.errors import describe

T = TypeVar("T")

REST_LETTERS = frozenset("zZxX")
# a bar ends on a barline, possibly opening a volta ("|1", ":|2", "|[2")
_CLOSED_BAR = re.compile(r"(\||::|\|:|\|\])(\[?\d+(,\d+)*)?\s*$")
# NotaGen augments to these 15 key names (abctoolkit's Key2index keys).
AUGMENTATION_KEYS = ("Cb", "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")


class InterleaveError(Exception):
    """The piece cannot be interleaved or transposed; the message is the reject reason."""


def _quiet(fn: Callable[..., T], *args: Any) -> T:
    # abctoolkit prints diagnostics ("Odd bar duration ...") to stdout; the build reports its own reasons.
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def interleave(lines: list[str]) -> list[str]:
    """Interleaved (CLaMP-compatible) ABC lines of cleaned standard ABC lines."""
    from abctoolkit.rotate import rotate_abc

    try:
        return _quiet(rotate_abc, list(lines))
    except Exception as err:
        raise InterleaveError(f"rotate_abc failed: {describe(err)}") from None


def deinterleave(lines: list[str]) -> list[str]:
    """Standard (voice-block) ABC lines of interleaved ABC lines."""
    from abctoolkit.rotate import unrotate_abc

    try:
        out = _quiet(unrotate_abc, list(lines))
    except Exception as err:
        raise InterleaveError(f"unrotate_abc failed: {describe(err)}") from None
    # unrotate_abc keeps each interleaved line's newline inside the bar text, which leaves
    # whitespace-only lines behind; in ABC a blank line ends the tune.
    return [ln + "\n" for ln in "".join(out).split("\n") if ln.strip()]


def is_rest_only(bar_text: str) -> bool:
    """NotaGen's rule: a bar is rest-only when no letter other than z Z x X occurs in it."""
    return not any(c.isalpha() and c not in REST_LETTERS for c in bar_text)


def notagen_form(lines: list[str]) -> list[str]:
    """NotaGen's training form of cleaned standard ABC: interleaved with rest-only voice bars omitted."""
    from abctoolkit.utils import extract_barline_and_bartext_dict

    try:
        meta, prefix, left, bars, right = _quiet(extract_barline_and_bartext_dict, list(lines))
    except Exception as err:
        raise InterleaveError(f"cannot split voices into bars: {describe(err)}") from None
    out = [ln if ln.endswith("\n") else ln + "\n" for ln in meta]
    for i in range(len(bars["V:1"])):
        line = ""
        for voice in prefix:
            text = bars[voice][i]
            if is_rest_only(text):
                continue
            if i == 0:
                line += f"[{voice}]{prefix[voice]}{left[voice][0]}{text}{right[voice][0]}"
            else:
                line += f"[{voice}]{text}{right[voice][i]}"
        out.append(line + "\n")
    return out


def prompt_lines(period: str, composer: str, instrumentation: str) -> list[str]:
    """The three conditioning lines NotaGen's fine-tuning data starts with."""
    return [f"%{period}\n", f"%{composer}\n", f"%{instrumentation}\n"]


def transpose(lines: list[str], key: str) -> list[str]:
    """Standard ABC lines transposed to ``key`` (one of AUGMENTATION_KEYS) with abctoolkit."""
    from abctoolkit.transpose import transpose_an_abc_text

    if key not in AUGMENTATION_KEYS:
        raise ValueError(f"unknown augmentation key {key!r}")
    try:
        text = _quiet(transpose_an_abc_text, list(lines), key)
    except Exception as err:
        raise InterleaveError(f"transposition to {key} failed: {describe(err)}") from None
    return [ln + "\n" for ln in text.split("\n") if ln.strip()]


def unclosed_bars(interleaved: list[str]) -> list[int]:
    """Indexes of body lines where some voice's bar does not end on a barline (a broken interleave)."""
    bad = []
    for i, line in enumerate(body_lines(interleaved)):
        segments = [s for s in re.split(r"(?=\[V:)", line.rstrip("\n")) if s.strip()]
        if any(not _CLOSED_BAR.search(s) for s in segments):
            bad.append(i)
    return bad


def body_lines(interleaved: list[str]) -> list[str]:
    """The tune-body lines (one per bar) of interleaved ABC."""
    return [ln for ln in interleaved if ln.startswith("[V:")]


def voice_ids(standard_lines: list[str]) -> list[str]:
    """Voice ids declared in the header of standard ABC (``V:1`` ...)."""
    seen: list[str] = []
    for ln in standard_lines:
        if ln.startswith("V:"):
            vid = ln.split()[0]
            if vid not in seen:
                seen.append(vid)
    return seen


_LINE_POSITION = re.compile(r"^\[r:[^\]]*\]")
_VOICE_BAR = re.compile(r"\[V:(\d+)\](.*?)(?=\[V:|$)")


def _rest_groups(meta_lines: list[str]) -> tuple[list[str], set[str]]:
    """Voice ids in number order and the set resting with ``z`` (the first voice of each %%score group).

    A voice outside every parenthesised group of ``%%score`` (or every voice, when there is none) is its
    own group; the other voices of a group rest with the invisible ``x``, as NotaGen writes them.
    """
    groups: list[list[str]] = []
    for line in meta_lines:
        if line.startswith("%%score"):
            groups += [g.split() for g in re.findall(r"\((.*?)\)", line)]
    grouped = {v for g in groups for v in g}
    voices = []
    for line in meta_lines:
        if line.startswith("V:"):
            voice = line.split()[0][2:]
            voices.append(voice)
            if voice not in grouped:
                groups.append([voice])
    voices.sort(key=lambda v: int(v) if v.isdigit() else 0)
    return voices, {g[0] for g in groups if g}


def restore_rest_voices(lines: list[str]) -> list[str]:
    """Interleaved (CLaMP-ready) lines of a NotaGen-form piece, as NotaGen's inference writes them.

    The inverse of `notagen_form`: ``[r:i/n]`` line prefixes are dropped and every voice missing from a
    bar gets a rest (``z`` or ``x``) as long as the bar's most common voice duration, closed with the
    bar's barline. Raises ValueError when no bar duration can be worked out.
    """
    from abctoolkit.duration import calculate_bartext_duration
    from abctoolkit.utils import Barline_regexPattern

    lines = [ln if ln.endswith("\n") else ln + "\n" for ln in lines if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "[V:" in ln), None)
    if start is None:
        raise ValueError("no tune body ([V:...] line)")
    meta, body = lines[:start], lines[start:]
    voices, z_voices = _rest_groups(meta)
    out = list(meta)
    ref_dur, barline = None, "|"
    for index, line in enumerate(body):
        line = _LINE_POSITION.sub("", line.rstrip("\n"))
        bars = {m.group(1): m.group(2) for m in _VOICE_BAR.finditer(line)}
        counts: dict = {}
        for text in bars.values():
            barline = "".join(re.split(Barline_regexPattern, text)[-2:])
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    dur = calculate_bartext_duration(text[: len(text) - len(barline)] if barline else text)
            except Exception:
                dur = None
            if dur is not None:
                counts[dur] = counts.get(dur, 0) + 1
        if counts:
            ref_dur = max(counts, key=lambda d: counts[d])
        left = line.split("[V:")[0] if index == 0 else ""
        rebuilt = ""
        for voice in voices + [v for v in bars if v not in voices]:
            if voice in bars:
                rebuilt += f"[V:{voice}]{bars[voice]}"
                continue
            if ref_dur is None:
                raise ValueError(f"body line {index}: no bar duration to fill the rest of voice {voice}")
            rest = "z" if voice in z_voices else "x"
            rebuilt += f"[V:{voice}]{left}{rest}{ref_dur}{barline}"
        out.append(rebuilt + "\n")
    return out
