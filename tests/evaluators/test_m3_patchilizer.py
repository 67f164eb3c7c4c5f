"""M3 patching of hand-written ABC, worked out by hand from CLaMP 2's rules."""

from __future__ import annotations

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


def test_prompt_comments_are_dropped_but_directives_kept():
    assert preprocess(DUET).startswith("%%score { 1 | 2 }\nL:1/8\n")
    assert preprocess("T:Café\n") == "T:Cafe\n"  # unidecode, as CLaMP 2


def test_one_patch_per_header_line_and_per_voice_per_bar():
    assert segments(preprocess(DUET)) == [
        "%%score { 1 | 2 }\n",
        "L:1/8\n",
        "M:4/4\n",
        "K:G\n",
        "V:1 treble\n",
        "V:2 bass\n",
        "[V:1]G2 A2 B2 c2|",
        "[V:2]G,8|\n",
        "[V:1]d8|]",
        "[V:2]D,8|]\n",
    ]


def test_bar_split_rules():
    assert split_bars("|:GABc dBGB:|\n") == ["|:GABc dBGB:|"]  # leading barline joins the first bar
    assert split_bars("ab|cd||ef") == ["ab|", "cd||"]  # text after the last barline is dropped
    assert split_bars("a|]b[|c::d|") == ["a|]", "b[|", "c::", "d|"]


def test_patch_ids_truncate_and_pad():
    assert segment_ids("ab|", 8) == [BOS_ID, 97, 98, 124, EOS_ID, PAD_ID, PAD_ID, PAD_ID]
    long = "x" * 70
    ids = segment_ids(long)
    assert len(ids) == 64 and ids[0] == BOS_ID and ids[-1] == ord("x")  # a long segment loses its eos


def test_special_patches_and_decode():
    p = M3Patchilizer()
    patches = p.encode(DUET)
    assert patches[0] == [BOS_ID] * 64 and patches[-1] == [EOS_ID] * 64
    assert len(patches) == 12
    assert p.decode(patches[1:-1]) == preprocess(DUET)


def test_feature_windows_of_a_long_piece():
    # 1,300 patches: two full windows, then the last 512 patches weighted by the 276 left over
    assert feature_windows(1300) == [(0, 512, 512), (512, 1024, 512), (788, 1300, 276)]
    assert feature_windows(1024) == [(0, 512, 512), (512, 1024, 512)]
    assert feature_windows(7) == [(0, 7, 7)]
    weights = [w for _, _, w in feature_windows(1300)]
    assert sum(weights) == 1300  # every patch counted once in total
