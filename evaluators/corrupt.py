"""Corrupted copies of a piece: the same material with its musical sense destroyed.

Two families, kept apart on purpose. The *held-out* corruptions (``shuffle_bars``, ``random_notes``) are
only used to check an evaluator. The *training* corruptions are hard negatives in contrastive training
(``evaluator.hard_negatives`` picks them), so that the feature depends on the notes, their order and which
voice plays them, and not only on the header: ``jitter_notes``, ``permute_bars`` and ``swap_voices`` destroy
the material; ``bar_lengths``, ``stutter``, ``cut_ending`` and ``octave_leaps`` mimic what a generating model
gets wrong (bars that do not fill the meter, a bar repeated in a loop, a piece that stops without its
cadence, a melody that jumps by octaves). The check then measures whether that generalises to corruptions the
evaluator never saw (``shuffle_bars`` moves each bar to a random line *and* voice, which no training
corruption does).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

_VOICE_LABEL = re.compile(r"\[V:[^\]]+\]")
# quoted text, decorations and inline fields are skipped; any other note letter is a note
_NOTE = re.compile(r'("[^"]*"|![^!]*!|\+[^+]*\+|\[[A-Za-z]:[^\]]*\])|([A-Ga-g])')


def body_line(line: str) -> bool:
    return line.startswith("[V:") or line.startswith("[r:")


def split_voices(line: str) -> tuple[str, list[tuple[str, str]]]:
    """``[r:0/3][V:1]ab|[V:2]cd|`` → ("[r:0/3]", [("[V:1]", "ab|"), ("[V:2]", "cd|")])."""
    body = line.rstrip("\n")
    labels = list(_VOICE_LABEL.finditer(body))
    if not labels:
        return body, []
    parts = []
    for k, m in enumerate(labels):
        end = labels[k + 1].start() if k + 1 < len(labels) else len(body)
        parts.append((m.group(0), body[m.end() : end]))
    return body[: labels[0].start()], parts


def shuffle_bars(text: str, rng: random.Random) -> str:
    """Every voice-bar of the piece moved to a random (line, voice) slot: same material, no structure."""
    lines = text.splitlines(keepends=True)
    parsed = {i: split_voices(ln) for i, ln in enumerate(lines) if body_line(ln)}
    contents = [c for _, parts in parsed.values() for _, c in parts]
    rng.shuffle(contents)
    it = iter(contents)
    for i, (prefix, parts) in parsed.items():
        newline = "\n" if lines[i].endswith("\n") else ""
        lines[i] = prefix + "".join(label + next(it) for label, _ in parts) + newline
    return "".join(lines)


def random_notes(text: str, rng: random.Random) -> str:
    """Every note letter of the body replaced by a random one (durations and bars kept)."""
    letters = "CDEFGABcdefgab"
    out = []
    for line in text.splitlines(keepends=True):
        if body_line(line):
            line = _NOTE.sub(lambda m: m.group(1) or rng.choice(letters), line)
        out.append(line)
    return "".join(out)


_STEPS = "CDEFGABcdefgab"


def jitter_notes(text: str, rng: random.Random, p: float = 0.8) -> str:
    """Each note letter moved one or two scale steps up or down with probability ``p`` (training)."""

    def move(m: re.Match) -> str:
        if m.group(1) or rng.random() >= p:
            return m.group(0)
        i = _STEPS.index(m.group(2)) + rng.choice((-2, -1, 1, 2))
        return _STEPS[min(max(i, 0), len(_STEPS) - 1)]

    return "".join(_NOTE.sub(move, ln) if body_line(ln) else ln for ln in text.splitlines(keepends=True))


def permute_bars(text: str, rng: random.Random) -> str:
    """The body lines (whole bars, every voice kept together) put in a random order (training)."""
    lines = text.splitlines(keepends=True)
    body = [i for i, ln in enumerate(lines) if body_line(ln)]
    order = [lines[i].rstrip("\n") for i in body]
    rng.shuffle(order)
    for i, content in zip(body, order):
        lines[i] = content + ("\n" if lines[i].endswith("\n") else "")
    return "".join(lines)


def swap_voices(text: str, rng: random.Random) -> str:
    """One random permutation of the voices' music applied to every bar: each voice keeps its label but
    plays another voice's part throughout (training; a single-voice piece gets its bars permuted)."""
    lines = text.splitlines(keepends=True)
    parsed = {i: split_voices(ln) for i, ln in enumerate(lines) if body_line(ln)}
    widths = Counter(len(parts) for _, parts in parsed.values())
    n = widths.most_common(1)[0][0] if widths else 0
    if n < 2:
        return permute_bars(text, rng)
    order = list(range(n))
    while order == list(range(n)):
        rng.shuffle(order)
    # lines of another width (the cut lines at the ends of a training crop) are left as they are
    for i, (prefix, parts) in parsed.items():
        if len(parts) == n:
            newline = "\n" if lines[i].endswith("\n") else ""
            lines[i] = prefix + "".join(parts[k][0] + parts[order[k]][1] for k in range(n)) + newline
    return "".join(lines)


# a note or rest with its length: accidental, letter, octave marks, then a length such as 2, /2, 3/2 or //
_TOKEN = re.compile(
    r'("[^"]*"|![^!]*!|\+[^+]*\+|\[[A-Za-z]:[^\]]*\])|((?:\^{1,2}|_{1,2}|=)?[A-Ga-gz][,\']*)(\d*(?:/+\d*)?)'
)


def _length(text: str) -> Fraction:
    if not text:
        return Fraction(1)
    if "/" not in text:
        return Fraction(int(text))
    num, _, rest = text.partition("/")
    slashes = 1 + rest.count("/")
    den = rest.replace("/", "")
    return Fraction(int(num or 1), int(den) if den else 2**slashes)


def _written(length: Fraction) -> str:
    if length == 1:
        return ""
    if length.denominator == 1:
        return str(length.numerator)
    return f"{length.numerator if length.numerator != 1 else ''}/{length.denominator}"


def _retime(segment: str, rng: random.Random) -> str:
    """One note or rest of a voice's bar dropped, doubled in length or halved: the bar no longer fills its meter."""
    notes = [m for m in _TOKEN.finditer(segment) if m.group(2)]
    if not notes:
        return segment
    m = rng.choice(notes)
    action = rng.choice(("drop", "double", "halve") if len(notes) > 1 else ("double", "halve"))
    if action == "drop":
        new = ""
    else:
        length = _length(m.group(3)) * (2 if action == "double" else Fraction(1, 2))
        new = m.group(2) + _written(length)
    return segment[: m.start()] + new + segment[m.end() :]


def bar_lengths(text: str, rng: random.Random, p: float = 0.4) -> str:
    """In about ``p`` of the bars, one voice's bar loses a note or has one note doubled or halved (training)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not body_line(line) or rng.random() >= p:
            continue
        prefix, parts = split_voices(line)
        if not parts:
            continue
        k = rng.randrange(len(parts))
        parts[k] = (parts[k][0], _retime(parts[k][1], rng))
        lines[i] = prefix + "".join(a + b for a, b in parts) + ("\n" if line.endswith("\n") else "")
    return "".join(lines)


def stutter(text: str, rng: random.Random) -> str:
    """A bar repeated over the next few bars, as a generating model stuck in a loop writes it (training)."""
    lines = text.splitlines(keepends=True)
    body = [i for i, ln in enumerate(lines) if body_line(ln)]
    if len(body) < 3:
        return permute_bars(text, rng)
    start = rng.randrange(len(body) - 1)
    run = min(len(body) - start - 1, rng.randint(2, max(2, len(body) // 3)))
    source = lines[body[start]].rstrip("\n")
    for i in body[start + 1 : start + 1 + run]:
        lines[i] = source + ("\n" if lines[i].endswith("\n") else "")
    return "".join(lines)


def cut_ending(text: str, rng: random.Random) -> str:
    """The last quarter to half of the bars removed: the piece stops without its cadence (training)."""
    lines = text.splitlines(keepends=True)
    body = [i for i, ln in enumerate(lines) if body_line(ln)]
    if len(body) < 4:
        return permute_bars(text, rng)
    keep = len(body) - max(1, int(len(body) * rng.uniform(0.25, 0.5)))
    drop = set(body[keep:])
    return "".join(ln for i, ln in enumerate(lines) if i not in drop)


def octave_leaps(text: str, rng: random.Random, p: float = 0.3) -> str:
    """About ``p`` of the notes moved an octave up or down: the melody's shape becomes jagged (training)."""

    def move(m: re.Match) -> str:
        if m.group(1) or not m.group(2) or m.group(2)[-1:] == "z" or rng.random() >= p:
            return m.group(0)
        head = m.group(2)
        up = rng.random() < 0.5
        return head + ("'" if up else ",") + m.group(3)

    return "".join(_TOKEN.sub(move, ln) if body_line(ln) else ln for ln in text.splitlines(keepends=True))


TRAINING_CORRUPTIONS = {
    fn.__name__: fn for fn in (jitter_notes, permute_bars, swap_voices, bar_lengths, stutter, cut_ending, octave_leaps)
}
