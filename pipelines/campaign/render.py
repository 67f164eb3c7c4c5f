"""A piece as people take it in: engraved as sheet music (SVG), rendered to sound, and as files to take away
(ABC, MusicXML, MIDI), offline.

Engraving goes interleaved ABC → standard ABC → MusicXML (abc2xml, as everywhere in clampdpo) → verovio's SVG,
whose glyphs are drawn as paths inside the SVG (no font or network at view time). Sound is the MIDI with the
prompt's instruments rendered by FluidSynth and a General MIDI SoundFont, as Ogg Vorbis (sound.py); where
none is installed, it is synthesised here from the score's notes (a soft additive tone per note, 8 kHz 8-bit
mono WAV), and the page says which. A piece that does not convert says why instead.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

import numpy as np

RENDER_VERSION = 3  # part of the report's render cache key: bump when what a piece renders to changes
SAMPLE_RATE = 8000
SECONDS = 20.0  # previews are cut here
TEMPO_QPM = 110.0  # quarter notes per minute when the score names no tempo


@dataclass
class Rendered:
    svg: str | None
    wav: bytes | None  # the sound (Ogg Vorbis with a SoundFont, else WAV: ``mime`` says which)
    error: str = ""
    mime: str = "audio/wav"
    sound: str = ""  # how it was made: 'soundfont <file>' or 'simple synthesis (no SoundFont installed)'
    musicxml: bytes | None = None
    midi: bytes | None = None


def _musicxml(interleaved: str) -> bytes:
    from base.abc.convert import abc_to_musicxml
    from base.abc.interleave import deinterleave

    return abc_to_musicxml("X:1\n" + "".join(deinterleave(interleaved.splitlines(keepends=True))))


def engrave(musicxml: bytes, width: int = 1800) -> str:
    """The first page of a MusicXML score as SVG (verovio), scaled to the page width by the viewer."""
    import verovio

    tk = verovio.toolkit()
    tk.setOptions(
        {
            "pageWidth": width,
            "pageHeight": 60000,
            "adjustPageHeight": True,
            "scale": 35,
            "breaks": "auto",
            "footer": "none",
            "header": "none",
            "svgViewBox": True,
        }
    )
    if not tk.loadData(musicxml.decode("utf-8")):
        raise ValueError("verovio cannot read the MusicXML")
    return str(tk.renderToSVG(1))


def synthesise(score: object, seconds: float = SECONDS) -> bytes:
    """An 8 kHz 8-bit mono WAV of a music21 score's notes: every part, a soft tone per pitch."""
    n = int(seconds * SAMPLE_RATE)
    out: np.ndarray = np.zeros(n, dtype=np.float64)
    qpm = TEMPO_QPM
    marks = list(score.flatten().getElementsByClass("MetronomeMark"))  # type: ignore[attr-defined]
    if marks and marks[0].number:
        qpm = float(marks[0].number)
    per_quarter = 60.0 / qpm
    for note in score.flatten().notes:  # type: ignore[attr-defined]
        start = float(note.offset) * per_quarter
        if start >= seconds:
            continue
        length = max(0.05, float(note.duration.quarterLength) * per_quarter)
        a, b = int(start * SAMPLE_RATE), min(n, int((start + length) * SAMPLE_RATE))
        if b <= a:
            continue
        t = np.arange(b - a) / SAMPLE_RATE
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t)
        for p in note.pitches:
            f = 440.0 * 2 ** ((p.midi - 69) / 12)
            out[a:b] += envelope * (np.sin(2 * math.pi * f * t) + 0.3 * np.sin(4 * math.pi * f * t))
    last = np.nonzero(np.abs(out) > 1e-4)[0]
    out = out[: (last[-1] + SAMPLE_RATE // 2) if len(last) else SAMPLE_RATE]
    peak = np.abs(out).max() or 1.0
    pcm = np.clip(128 + 110 * out / peak, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def render(interleaved: str | None, prompt: str = "") -> Rendered:
    """Engraving, sound and files of a piece (its instruments from the ``prompt``), or the reason it has none."""
    from base.abc.score import parse_musicxml
    from pipelines.campaign.sound import midi, render_ogg, soundfont

    if not interleaved:
        return Rendered(None, None, "no interleaved form (the sample could not be made CLaMP-ready)")
    try:
        xml = _musicxml(interleaved)
    except Exception as err:
        return Rendered(None, None, f"cannot convert to MusicXML: {err}")
    svg = wav = None
    errors = []
    try:
        svg = engrave(xml)
    except Exception as err:
        errors.append(f"cannot engrave: {type(err).__name__}: {err}")
    if svg is not None and 'class="note"' not in svg:
        # Empty staves and a silent clip read as a rendering bug; say what the piece is instead.
        return Rendered(None, None, "nothing to engrave or play: the piece has no notes, only rests")
    mid = None
    mime, sound = (
        "audio/wav",
        "simple synthesis (no SoundFont installed: apt-get install fluidsynth fluid-soundfont-gm)",
    )
    try:
        score = parse_musicxml(xml)
        mid = midi(score, prompt)
        sf2 = soundfont()
        if sf2 is not None:
            wav, mime, sound = render_ogg(mid, sf2), "audio/ogg", f"SoundFont {sf2.name}"
        else:
            wav = synthesise(score)
    except Exception as err:
        errors.append(f"cannot play: {type(err).__name__}: {err}")
    return Rendered(svg, wav, "; ".join(errors), mime, sound, xml, mid)
