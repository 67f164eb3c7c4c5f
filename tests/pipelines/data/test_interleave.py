"""Conversion of a small multi-voice score to the exact interleaved and NotaGen forms."""

from base.abc.interleave import deinterleave, is_rest_only, prompt_lines, transpose, unclosed_bars
from pipelines.data.build import convert_item
from pipelines.data.sources import SourceItem
from tests.conftest import DUET, musicxml

DUET_INTERLEAVED = """%%score 1 2
L:1/8
M:4/4
K:C
V:1 treble nm="Violin"
V:2 treble nm="Violoncello"
[V:1]c2 d2 e2 f2|[V:2]C,2 z2 G,2 z2|
[V:1]g2 z2 z2 z2|[V:2]z2 z2 z2 z2|
[V:1]e2 d2 c2 z2|[V:2]G,2 G,2 C,2 z2|
[V:1]c2 c2 c2 c2|[V:2]C,2 E,2 G,2 C2|
"""

# NotaGen's training form drops the cello's rest-only bar 2 (its voice is simply absent from the line).
DUET_NOTAGEN = """%%score 1 2
L:1/8
M:4/4
K:C
V:1 treble nm="Violin"
V:2 treble nm="Violoncello"
[V:1]c2 d2 e2 f2|[V:2]C,2 z2 G,2 z2|
[V:1]g2 z2 z2 z2|
[V:1]e2 d2 c2 z2|[V:2]G,2 G,2 C,2 z2|
[V:1]c2 c2 c2 c2|[V:2]C,2 E,2 G,2 C2|
"""


def _duet_item() -> SourceItem:
    xml = musicxml(DUET, title="Duet", composer="Johann Sebastian Bach").encode()
    return SourceItem("test.duet", "test", "duet.musicxml", "musicxml", xml, "test", "test/duet")


def test_duet_converts_to_exact_interleaved_text():
    res = convert_item(_duet_item(), unit_length=8)
    assert res["ok"], res
    assert res["interleaved"] == DUET_INTERLEAVED
    assert res["bars"] == 4 and res["voices"] == 2 and res["aligned"]
    # the names NotaGen removes are gone, the facts for the prompt were read before removal
    assert "T:" not in res["interleaved"] and "C:" not in res["interleaved"]
    assert res["facts"]["composer_field"] == "Johann Sebastian Bach"
    assert res["facts"]["part_names"] == ["Violin", "Violoncello"]


def test_notagen_form_omits_rest_only_voice_bars():
    res = convert_item(_duet_item(), unit_length=8)
    assert res["notagen"] == DUET_NOTAGEN


def test_rest_rule_matches_notagen():
    assert is_rest_only("z2 z2 z4")
    assert is_rest_only("Z2")
    assert is_rest_only("x8")
    assert not is_rest_only("z2 c2 z4")
    assert not is_rest_only("!fermata!z8")  # NotaGen counts any other letter, decorations included


def test_deinterleave_gives_back_the_voices():
    lines = DUET_INTERLEAVED.splitlines(keepends=True)
    standard = "".join(deinterleave(lines))
    assert "V:1\n" in standard and "V:2\n" in standard
    assert all(ln.strip() for ln in standard.splitlines())  # no blank line would end the tune early
    v1 = standard.split("V:1\n", 1)[1].split("V:2\n")[0]
    assert v1.split() == "c2 d2 e2 f2 | g2 z2 z2 z2 | e2 d2 c2 z2 | c2 c2 c2 c2 |".split()


def test_transpose_to_another_key():
    res = convert_item(_duet_item(), unit_length=8)
    up = transpose(res["standard"].splitlines(keepends=True), "D")
    assert "K:D\n" in up
    assert "d2 e2 f2 g2 | a2" in "".join(up)  # F sharp comes from the key signature


def test_prompt_lines():
    assert prompt_lines("Baroque", "Bach, Johann Sebastian", "Chorus") == [
        "%Baroque\n",
        "%Bach, Johann Sebastian\n",
        "%Chorus\n",
    ]


def test_unclosed_bars_detects_broken_interleave_but_accepts_voltas():
    assert unclosed_bars(["K:C\n", "[V:1]ab|1\n", "[V:1]cd:|2\n", "[V:1]ef|]\n"]) == []
    assert unclosed_bars(["K:C\n", "[V:1]ab|\n", "[V:1]| cd \n"]) == [1]
