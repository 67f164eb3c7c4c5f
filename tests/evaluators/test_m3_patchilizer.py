"""M3 patching of hand-written ABC, each expectation worked out by hand from the rules of upstream's patchilizer
(sanderwood/clamp2 and clamp3 ``code/utils.py``, NotaGen's ``clamp2/extract_clamp2.py``)."""

from __future__ import annotations

import pytest

from evaluators.m3_patchilizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    M3Patchilizer,
    feature_windows,
    preprocess,
    segment_ids,
    segments,
    split_bars,
)

DUET = (
    "%Baroque\n%Bach, Johann Sebastian\n%Chorus\n%%score { 1 | 2 }\nL:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n"
    "[V:1]G2 A2 B2 c2|[V:2]G,8|\n[V:1]d8|][V:2]D,8|]\n"
)


def ids(text: str, size: int = 64) -> list[int]:
    """bos, the character codes, eos, then pads up to the patch size: written out, not computed by the module."""
    row = [1] + [ord(c) for c in text] + [2]
    return (row + [0] * size)[:size]


def test_each_family_prepares_the_text_as_its_own_extraction_does():
    # NotaGen's extraction drops % comment lines (the prompt lines) and keeps %% directives
    assert preprocess(DUET, "notagen").startswith("%%score { 1 | 2 }\nL:1/8\nM:4/4\n")
    # CLaMP 2's extraction reads the file as it is
    assert preprocess(DUET, "clamp2") == DUET
    # CLaMP 3's patchilizer removes the L:1/8 line
    assert "L:1/8" not in preprocess(DUET, "clamp3") and preprocess(DUET, "clamp3").startswith("%Baroque\n")
    # all of them only ever see ASCII
    assert preprocess("T:Café\n", "clamp2") == "T:Cafe\n"
    with pytest.raises(ValueError, match="unknown preprocessing family"):
        preprocess(DUET, "clamp4")


def test_one_patch_per_header_line_and_per_voice_per_bar():
    assert segments(preprocess(DUET)) == [
        "%%score { 1 | 2 }\n", "L:1/8\n", "M:4/4\n", "K:G\n", "V:1 treble\n", "V:2 bass\n",
        "[V:1]G2 A2 B2 c2|", "[V:2]G,8|\n", "[V:1]d8|]", "[V:2]D,8|]\n",
    ]  # fmt: skip
    # a comment line holding barlines is music to CLaMP 2 (its extraction keeps it), nothing to NotaGen's
    assert segments(preprocess("%a|b|\n", "clamp2")) == ["%a|", "b|\n"]
    assert segments(preprocess("%a|b|\n", "notagen")) == []
    # a line without barlines gives no patch; a last line without a newline still gets one on its last bar
    assert segments("w: words only\nab cd\n[V:1]ab|") == ["w: words only\n", "[V:1]ab|\n"]
    # lines end only at \n: a carriage return stays inside the bar
    assert segments("ab|\rcd|\n") == ["ab|", "\rcd|\n"]


def test_bar_split_rules():
    assert split_bars("|:GABc dBGB:|\n") == ["|:GABc dBGB:|"]  # a leading barline joins the first bar
    assert split_bars("ab|cd||ef") == ["ab|", "cd||"]  # text after the last barline is dropped
    assert split_bars("a|]b[|c::d|") == ["a|]", "b[|", "c::", "d|"]
    assert split_bars("|") == []  # (upstream raises IndexError on a lone barline)


def test_patch_ids_truncate_and_pad():
    assert segment_ids("ab|", 8) == [BOS_ID, 97, 98, 124, EOS_ID, PAD_ID, PAD_ID, PAD_ID]
    long = "x" * 70
    assert segment_ids(long) == [1] + [120] * 63  # 72 ids cut to 64: the eos is lost


def test_the_piece_is_framed_by_the_two_special_patches():
    p = M3Patchilizer()
    patches = p.encode(DUET)
    assert patches[0] == [1] * 64  # chr(1)·64 → bos + 64 × 1, cut to 64
    assert patches[-1] == [1] + [2] * 63  # chr(2)·64 → bos + 64 × 2 + eos, cut to 64: bos then 63 eos
    assert patches[1] == ids("%%score { 1 | 2 }\n") and patches[7] == ids("[V:1]G2 A2 B2 c2|")
    assert len(patches) == 12
    assert p.decode(patches[1:-1]) == preprocess(DUET)
    assert M3Patchilizer(family="clamp3").encode(DUET)[2] == ids("M:4/4\n")  # no L:1/8 patch
    with pytest.raises(ValueError, match="family"):
        M3Patchilizer(family="abc")


def test_feature_windows_of_a_long_piece():
    # 1,300 patches: two full windows, then the last 512 patches weighted by the 276 left over
    assert feature_windows(1300) == [(0, 512, 512), (512, 1024, 512), (788, 1300, 276)]
    assert feature_windows(1024) == [(0, 512, 512), (512, 1024, 512)]
    assert feature_windows(7) == [(0, 7, 7)]
    weights = [w for _, _, w in feature_windows(1300)]
    assert sum(weights) == 1300  # every patch counted once in total


def test_our_family_spells_out_each_bars_length_against_the_meter():
    text = "%Folk\nL:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n[V:1]G2 A2 B2 c2|[V:2]C8|\n[V:1]A2 B2 c|[V:2]C6|\n"
    marked = preprocess(text, "notagen-meter")
    assert marked.splitlines()[-2:] == ["[V:1]$1$G2 A2 B2 c2|[V:2]$1$C8|", "[V:1]$5/8$A2 B2 c|[V:2]$3/4$C6|"]
    assert preprocess(marked, "notagen-meter") == marked  # stale marks are replaced, never doubled
    assert segments(marked)[-1] == "[V:2]$3/4$C6|\n"  # still one patch per voice per bar
