"""NotaGen's patch ids for hand-written pieces, worked out character by character."""

import random

from models.patchilizer import BOS_ID, EOS_ID, PAD_ID, Patchilizer

BOS = [BOS_ID] * 15 + [EOS_ID]
EOS = [BOS_ID] + [EOS_ID] * 15


def patch(text: str, eos: bool = True) -> list[int]:
    """Ids of one patch: the characters, an eos when the text does not fill it, then pads."""
    ids = [ord(c) for c in text]
    if eos and len(ids) < 16:
        ids.append(EOS_ID)
    return ids + [PAD_ID] * (16 - len(ids))


P = Patchilizer(patch_size=16, patch_length=64, stream=True)


def test_metadata_lines_are_patched_line_by_line():
    ids = P.encode_prompt(["%Baroque\n", "%Bach, Johann Sebastian\n", "%Chorus\n"])
    assert ids == [
        BOS,
        patch("%Baroque\n"),
        patch("%Bach, Johann Se", eos=False),
        patch("bastian\n"),  # 24 chars + eos: 16 + 9
        patch("%Chorus\n"),
    ]


def test_a_line_of_exactly_16_chars_gets_no_eos():
    assert P.split_patches("0123456789abcdef") == ["0123456789abcdef"]
    assert P.split_patches("0123456789abcde") == ["0123456789abcde\x02"]
    assert P.split_patches("0123456789abcdef0") == ["0123456789abcdef", "0\x02"]


def test_bars_take_the_barline_before_them():
    assert P.split_bars(["[V:1]ab|[V:2]cd|\n"]) == ["[V:1]ab", "|[V:2]cd|\n"]
    assert P.split_bars(["[V:1]ab|:cd::ef:|gh||\n"]) == ["[V:1]ab", "|:cd", "::ef", ":|gh||\n"]
    assert P.split_bars(["|:ab|\n"]) == ["|:ab|\n"]  # the final "|\n" has no voice tag: merged back
    assert P.split_bars(["no barline\n"]) == ["no barline\n"]


def test_multi_voice_piece_in_stream_mode():
    text = "%Baroque\n%Bach, Johann Sebastian\n%Chorus\nL:1/8\nK:G\n[V:1]G2|[V:2]B,2|\n[V:1]c4 B2|]\n"
    ids = P.encode_train(text)
    assert ids == [
        BOS,
        patch("%Baroque\n"),
        patch("%Bach, Johann Se", eos=False),
        patch("bastian\n"),
        patch("%Chorus\n"),
        patch("L:1/8\n"),
        patch("K:G\n"),
        # line 0 of 2: "[r:0/1][V:1]G2|[V:2]B,2|\n" → bars "[r:0/1][V:1]G2" and "|[V:2]B,2|\n"
        patch("[r:0/1][V:1]G2"),
        patch("|[V:2]B,2|\n"),
        # line 1: "[r:1/0][V:1]c4 B2|]\n" → one bar "[r:1/0][V:1]c4 B2" then "|]\n" merged into it
        patch("[r:1/0][V:1]c4 B", eos=False),
        patch("2|]\n"),
        EOS,
    ]
    assert P.decode(ids[1:-1]) == text.replace("[V:1]G2", "[r:0/1][V:1]G2").replace("[V:1]c4", "[r:1/0][V:1]c4")


def test_without_stream_there_is_no_line_prefix():
    ids = Patchilizer(stream=False).encode_train("K:C\n[V:1]CDEF|\n")
    assert ids == [BOS, patch("K:C\n"), patch("[V:1]CDEF|\n"), EOS]


def test_long_piece_is_cut_at_a_line_boundary():
    small = Patchilizer(patch_size=16, patch_length=8, stream=True)
    body = "".join(f"[V:1]c{i}|\n" for i in range(10))  # each line: one patch "[r:i/n][V:1]ci|\n"
    text = "K:C\n" + body
    heads, tails, middles = set(), set(), set()
    for seed in range(40):
        patches = small.train_patches(text, rng=random.Random(seed))
        assert len(patches) == 8
        assert patches[:2] == [small.bos_patch, "K:C\n\x02"]  # metadata always kept
        first_body = patches[2]
        if first_body.startswith("[r:0/"):
            heads.add(seed)
        elif patches[-1] == small.eos_patch:
            tails.add(seed)
        else:
            middles.add(seed)
        # every kept body patch is a whole line that starts with its own position prefix
        assert all(p.startswith("[r:") for p in patches[2:] if p != small.eos_patch)
    assert heads and tails and middles
    # the tail cut keeps the piece's end: the last 5 lines then the eos patch (2 metadata + 5 + 1 = 8)
    tail = small.train_patches(text, rng=random.Random(min(tails)))
    assert tail[2].startswith("[r:5/4]") and tail[-1] == small.eos_patch
    unstreamed = Patchilizer(patch_size=16, patch_length=8, stream=False).train_patches(text)
    assert len(unstreamed) == 8 and unstreamed[2] == "[V:1]c0|\n\x02"  # plain truncation


def test_generate_leaves_the_last_bar_open():
    ids = P.encode_generate("%Folk\nK:G\n[r:0/3][V:1]GA")
    assert ids[0] == BOS
    assert ids[-1] == [ord(c) for c in "[r:0/3][V:1]GA"]  # no eos, no pads: the model continues it
    assert ids[-2] == patch("K:G\n")


def test_eos_patch_detection_and_decode_skips_specials():
    assert Patchilizer.is_eos_patch(EOS) and not Patchilizer.is_eos_patch(BOS)
    assert P.decode([BOS, patch("abc"), EOS]) == "abc"
