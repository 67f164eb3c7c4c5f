"""Shared fixtures: small real scores written by the tests themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest


def musicxml(parts: list[tuple[str, list[list[str]]]], title: str = "Test piece", composer: str = "Test Composer",
             beats: int = 4) -> str:
    """A MusicXML document: each part is (name, measures), each measure a list of quarter notes such as
    'C4', 'F#4', 'Bb3' or 'r' (a quarter rest). Time signature beats/4, key of C."""
    part_list = "".join(f'<score-part id="P{i + 1}"><part-name>{name}</part-name></score-part>'
                        for i, (name, _) in enumerate(parts))
    body = []
    for i, (_, measures) in enumerate(parts):
        ms = []
        for m, notes in enumerate(measures, start=1):
            attrs = ""
            if m == 1:
                attrs = (f"<attributes><divisions>1</divisions><key><fifths>0</fifths></key>"
                         f"<time><beats>{beats}</beats><beat-type>4</beat-type></time>"
                         f"<clef><sign>G</sign><line>2</line></clef></attributes>")
            ns = []
            for n in notes:
                if n == "r":
                    ns.append("<note><rest/><duration>1</duration><type>quarter</type></note>")
                    continue
                step, rest = n[0], n[1:]
                alter = {"#": 1, "b": -1}.get(rest[0], 0) if rest[0] in "#b" else 0
                octave = rest[1:] if alter else rest
                alt = f"<alter>{alter}</alter>" if alter else ""
                ns.append(f"<note><pitch><step>{step}</step>{alt}<octave>{octave}</octave></pitch>"
                          f"<duration>1</duration><type>quarter</type></note>")
            ms.append(f'<measure number="{m}">{attrs}{"".join(ns)}</measure>')
        body.append(f'<part id="P{i + 1}">{"".join(ms)}</part>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<score-partwise version="3.1">'
            f"<work><work-title>{title}</work-title></work>"
            f'<identification><creator type="composer">{composer}</creator></identification>'
            f"<part-list>{part_list}</part-list>{''.join(body)}</score-partwise>\n")


DUET = [
    ("Violin", [["C5", "D5", "E5", "F5"], ["G5", "r", "r", "r"], ["E5", "D5", "C5", "r"], ["C5", "C5", "C5", "C5"]]),
    ("Violoncello", [["C3", "r", "G3", "r"], ["r", "r", "r", "r"], ["G3", "G3", "C3", "r"], ["C3", "E3", "G3", "C4"]]),
]

FOLK_ABC = """% a two-tune file, as folk collections ship them
X:1
T:First Reel
C:Trad.
M:4/4
L:1/8
K:G
|:GABc dBGB|cBAG FDEF|GABc dBGB|cAFA G4:|

X:2
T:Second Jig
M:6/8
L:1/8
K:D
|:DFA dAF|GBd gdB|AFA dcB|AFE D3:|
"""


@pytest.fixture
def score_dir(tmp_path: Path) -> Path:
    """A folder of good scores in three formats: a MusicXML duet, a two-tune ABC file, a Humdrum duet."""
    d = tmp_path / "scores"
    d.mkdir()
    (d / "duet.musicxml").write_text(musicxml(DUET, title="Duet", composer="Johann Sebastian Bach"))
    (d / "reels.abc").write_text(FOLK_ABC)
    (d / "canon.krn").write_text(
        "!!!COM: Mozart, Wolfgang Amadeus\n**kern\t**kern\n*M4/4\t*M4/4\n=1\t=1\n4c\t4e\n4d\t4f\n4e\t4g\n4f\t4a\n"
        "=2\t=2\n4g\t4b\n4a\t4cc\n4b\t4dd\n4cc\t4ee\n=3\t=3\n4g\t4e\n4e\t4c\n2c\t2C\n"
        "=4\t=4\n4c\t4e\n4d\t4f\n2e\t2g\n==\t==\n*-\t*-\n")
    return d
