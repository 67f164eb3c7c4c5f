"""Engraving and sound of a piece for the report, and the SVG charts, on pieces built here."""

from __future__ import annotations

import io
import wave

import music21
import pytest

from pipelines.campaign import charts, sound
from pipelines.campaign.render import SAMPLE_RATE, render

PIECE = "L:1/8\nM:3/4\nK:G\nV:1 treble\nV:2 bass\n[V:1]G2 A2 B2|[V:2]G,6|\n[V:1]c6|[V:2]C,6|\n[V:1]B6|][V:2]G,,6|]\n"


def test_a_piece_is_engraved_with_its_notes_and_rendered_to_sound(monkeypatch):
    # without a SoundFont: the simple synthesis, said so
    monkeypatch.setattr(sound, "soundfont", lambda: None)
    r = render(PIECE, "Baroque_Bach, Johann Sebastian_Chorus")
    assert r.error == "" and r.svg and r.wav and r.mime == "audio/wav" and "no SoundFont installed" in r.sound
    assert r.svg.count('class="note"') == 8 and "<svg" in r.svg and "http" not in r.svg.replace("http://www.w3.org", "")
    with wave.open(io.BytesIO(r.wav)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (SAMPLE_RATE, 1, 1)
        seconds = w.getnframes() / SAMPLE_RATE
    # three bars of 3/4 at 110 quarters a minute last 4.9 s; the tail after the last note is half a second
    assert 4.5 < seconds < 6.0
    # the files to take away: MusicXML and MIDI with the prompt's instruments (a choir for a chorus)
    assert b"<score-partwise" in r.musicxml and r.midi[:4] == b"MThd"
    programs = {
        i.midiProgram
        for i in music21.converter.parseData(r.midi, format="midi").recurse().getElementsByClass("Instrument")
    }
    assert programs == {52}


@pytest.mark.skipif(sound.soundfont() is None, reason="no FluidSynth and General MIDI SoundFont installed")
def test_with_a_soundfont_the_sound_is_stereo_ogg_at_22_khz_with_the_prompts_instruments():
    import soundfile

    r = render(PIECE, "Classical_Haydn, Joseph_String Quartet")
    assert r.mime == "audio/ogg" and r.sound.startswith("SoundFont") and r.wav[:4] == b"OggS"
    audio, rate = soundfile.read(io.BytesIO(r.wav))
    # three bars of 3/4 at the MIDI default of 120 a minute (4.5 s), the strings' release and a half-second tail
    assert rate >= 22050 and audio.shape[1] == 2 and 4.5 < len(audio) / rate < 7.0 and abs(audio).max() > 0.01


def test_the_instrument_table():
    assert sound.programs("Folk_Traditional, Irish_Solo melody", 1) == [40]  # a fiddle
    assert sound.programs("Classical_Haydn, Joseph_String Quartet", 4) == [40, 40, 41, 42]
    assert sound.programs("Romantic_Schubert, Franz_Voice and Keyboard", 3) == [53, 0, 0]
    assert sound.programs("Baroque_Bach, Johann Sebastian_Chorus", 5) == [52] * 5  # the last repeats
    assert sound.programs("Modern_Someone_Theremin", 2) == [0, 0]  # unknown: a piano


def test_what_cannot_be_rendered_says_why():
    assert "no interleaved form" in render(None).error
    broken = render("L:1/8\nM:3/4\nK:G\nV:1 treble\n[V:1]G2 A2 B2\n[V:2]c|\n")
    assert broken.svg is None and broken.wav is None and "cannot convert" in broken.error


def test_charts_are_plain_svg_with_a_band_a_reference_and_points():
    svg = charts.lines(
        "CLaMP",
        [{"name": "train", "x": [0, 1, 2], "y": [0.1, 0.3, 0.5], "low": [0.0, 0.2, 0.4], "high": [0.2, 0.4, 0.6]}],
        references={"real": 0.65},
    )
    assert svg.startswith("<svg") and svg.count("<circle") == 3 and "<polygon" in svg and "real 0.65" in svg
    sc = charts.scatter("round 1", [(0.1, 0.2), (0.5, 0.6), (0.9, 1.0)], "CLaMP", "judge")
    assert "r = 1.00" in sc and sc.count("<circle") == 3
    h = charts.histogram("scores", {"samples": [0.1, 0.2, 0.2], "real pieces": [0.9]}, bins=4)
    assert "(n=3)" in h and "(n=1)" in h


def test_a_piece_of_rests_only_is_a_placeholder_not_empty_staves():
    r = render("L:1/8\nM:3/4\nK:G\nV:1 treble\nV:2 bass\n[V:1]z6|[V:2]z6|\n[V:1]z6|][V:2]z6|]\n")
    assert r.svg is None and r.wav is None and "no notes" in r.error


def test_curves_leave_out_a_metric_an_older_campaign_never_logged():
    from pipelines.campaign.report import _curves

    old = [{"round": k, "train/clamp/mean": 0.1 * k, "train/meter_fill": 0.5} for k in range(3)]
    new = [{**r, "train/js/meter": 0.2, "train/bars": 17.0, "train/real/bars": 18.0} for r in old]
    html = _curves({"old": old})
    assert "bars filling the meter" in html and "metre mix" not in html and "length" not in html
    both = _curves({"old": old, "new": new})
    assert "metre mix vs real pieces" in both and "real 18" in both
