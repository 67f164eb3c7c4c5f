"""A piece's sound as a musician would judge it: MIDI with the prompt's instruments, rendered by FluidSynth
with a General MIDI SoundFont, compressed to Ogg Vorbis (stereo, 22.05 kHz) small enough to embed many in a page.

Where FluidSynth or a SoundFont is not installed (Debian: ``apt-get install fluidsynth fluid-soundfont-gm``;
or ``CLAMPDPO_SOUNDFONT`` names an .sf2 file), the report falls back to the simple synthesis of render.py and
says so on the page.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

RATE = 22050  # keeps a fiddle's overtones; at this rate stereo Vorbis is ~50 kbit/s, ~130 kB a preview
SECONDS = 20.0  # previews are cut here
OGG_QUALITY = 0.2  # Vorbis quality (0..1)
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian's fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
)

# The one table of instruments: a prompt's instrumentation → General MIDI programs, one per part in order (the
# last repeats for further parts). Programs are 0-based: 0 piano, 40 violin, 41 viola, 42 cello, 52 choir aahs,
# 53 voice oohs, 48 string ensemble, 73 flute, 19 church organ, 6 harpsichord.
INSTRUMENTS: dict[str, tuple[int, ...]] = {
    "Solo melody": (40,),  # the folk collections are fiddle tunes
    "Chorus": (52, 52, 52, 52),
    "String Quartet": (40, 40, 41, 42),
    "Keyboard": (0,),
    "Voice and Keyboard": (53, 0, 0),
    "Voices and Instruments": (52, 52, 52, 52, 48),
    "Chamber": (40, 41, 42, 0),
    "Orchestral": (48,),
    "Organ": (19,),
    "Harpsichord": (6,),
    "Flute": (73,),
}
DEFAULT_PROGRAM = 0


def instrumentation(prompt: str) -> str:
    """The instrumentation part of a ``period_composer_instrumentation`` prompt."""
    return prompt.rsplit("_", 1)[-1] if "_" in prompt else prompt


def programs(prompt: str, parts: int) -> list[int]:
    """General MIDI program of each of ``parts`` parts for a prompt (``INSTRUMENTS``; a piano otherwise)."""
    table = INSTRUMENTS.get(instrumentation(prompt), (DEFAULT_PROGRAM,))
    return [table[min(i, len(table) - 1)] for i in range(parts)]


def soundfont() -> Path | None:
    """The General MIDI SoundFont to render with (``CLAMPDPO_SOUNDFONT`` or Debian's), when FluidSynth is
    installed too; None otherwise."""
    if shutil.which("fluidsynth") is None:
        return None
    named = os.environ.get("CLAMPDPO_SOUNDFONT")
    for candidate in ([named] if named else []) + list(SOUNDFONTS):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def midi(score: Any, prompt: str) -> bytes:
    """Standard MIDI of a music21 score with the prompt's instruments and the score's own tempo."""
    from music21 import instrument

    score = score.__deepcopy__()
    parts = list(score.parts)
    for part, program in zip(parts, programs(prompt, len(parts))):
        for old in list(part.recurse().getElementsByClass("Instrument")):
            old.activeSite.remove(old)
        inst = instrument.Instrument()
        inst.midiProgram = program
        part.insert(0, inst)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.mid"
        score.write("midi", fp=str(path))
        return path.read_bytes()


def render_ogg(midi_bytes: bytes, sf2: Path, seconds: float = SECONDS) -> bytes:
    """The MIDI rendered by FluidSynth (stereo, ``RATE`` Hz), cut to ``seconds`` and faded out, as Ogg Vorbis."""
    import numpy as np
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        src, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        src.write_bytes(midi_bytes)
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(RATE), "-F", str(wav), str(sf2), str(src)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    audio = audio[: int(seconds * rate)]
    quiet = np.nonzero(np.abs(audio).max(1) > 1e-4)[0]
    audio = audio[: quiet[-1] + rate // 2] if len(quiet) else audio[:rate]
    fade = min(len(audio), rate // 2)
    audio[len(audio) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    out = io.BytesIO()
    soundfile.write(out, audio, rate, format="OGG", subtype="VORBIS", compression_level=1 - OGG_QUALITY)
    return out.getvalue()
