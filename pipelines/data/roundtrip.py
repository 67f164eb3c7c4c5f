"""The corpus round trip: interleaved ABC → standard ABC → MusicXML (abc2xml) → music21, bars kept.

This is the check that our interleaved files are still real music a notation program reads: a piece
passes when music21 parses the converted score and finds as many bars as the interleaved file has lines.
"""

from __future__ import annotations

import contextlib
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.data.convert import ConversionError, abc_to_musicxml
from pipelines.data.interleave import InterleaveError, body_lines, deinterleave


@dataclass
class RoundTrip:
    piece: str
    ok: bool
    expected_bars: int
    parsed_bars: int | None
    reason: str = ""
    score: Any = field(default=None, repr=False, compare=False)  # the music21 score, for further analysis


def parse_musicxml(xml: bytes):
    import music21

    with contextlib.redirect_stderr(io.StringIO()):
        return music21.converter.parseData(xml, format="musicxml")


def parse_interleaved(interleaved_text: str):
    """The music21 score of an interleaved piece (deinterleave → abc2xml → music21); raises on failure."""
    standard = "".join(deinterleave(interleaved_text.splitlines(keepends=True)))
    return parse_musicxml(abc_to_musicxml("X:1\n" + standard))


def bar_count(score) -> int:
    """Bars of the first part of a music21 score."""
    parts = list(score.parts) or [score]
    return len(parts[0].getElementsByClass("Measure"))


def musicxml_bar_count(xml: bytes) -> int:
    """Bars of the first part of a MusicXML document, as music21 reads them."""
    return bar_count(parse_musicxml(xml))


def roundtrip(interleaved_text: str, name: str = "") -> RoundTrip:
    lines = interleaved_text.splitlines(keepends=True)
    expected = len(body_lines(lines))
    try:
        score = parse_interleaved(interleaved_text)
        bars = bar_count(score)
    except (InterleaveError, ConversionError) as err:
        return RoundTrip(name, False, expected, None, str(err))
    except Exception as err:  # music21 raises many exception types on bad MusicXML
        return RoundTrip(name, False, expected, None, f"music21 cannot parse: {type(err).__name__}: {err}")
    ok = bars == expected
    return RoundTrip(name, ok, expected, bars, "" if ok else f"{bars} bars parsed, {expected} expected", score)


def verify_corpus(corpus_dir: str | Path, sample: int = 100, seed: int = 0) -> list[RoundTrip]:
    """Round-trip a seeded random sample of the corpus's interleaved pieces."""
    files = sorted((Path(corpus_dir) / "interleaved").glob("*.abc"))
    if not files:
        raise FileNotFoundError(f"{corpus_dir}: no interleaved/*.abc (build the corpus first)")
    chosen = random.Random(seed).sample(files, min(sample, len(files)))
    return [roundtrip(f.read_text(encoding="utf-8"), f.stem) for f in sorted(chosen)]
