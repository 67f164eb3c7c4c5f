"""Every reader and parser we own, under generated inputs (Hypothesis) instead of hand-picked ones only.

The properties: no input escapes as an exception other than the one error each reader documents (a reject
row, a ``ConfigError`` naming the field, a ``CheckpointError``, a state that reads as damaged); every input is
kept or rejected exactly once. Example counts are bounded and the seed fixed (``derandomize``), so CI runs the
same examples in about a minute; ``CLAMPDPO_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_readers.py``
searches further on demand. A failure Hypothesis finds is kept below as a regular test (``test_found_*``).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from base.errors import CheckpointError
from base.typed_config import ConfigError
from tests.conftest import FUZZ, FUZZ_EXAMPLES

# ------------------------------------------------------------------ generators of music-like text

FIELDS = "XTCMLKQVWwZPRSNOGHIBDFmrsU"
ABC_BODY = "ABCDEFGabcdefgzxZ,'^_=/|:[]()234678<>-~.!+{} \"\\%\n"
header_value = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["4/4", "6/8", "C|", "none", "0/4", "3/0", "1/0", "999999999/1", "(2+3)/8", "1/8", "Gmaj", "Hp"]),
    st.integers(-(2**40), 2**40).map(str),
)
header = st.lists(st.tuples(st.sampled_from(FIELDS), header_value), max_size=8).map(
    lambda fs: "".join(f"{k}:{v}\n" for k, v in fs)
)
body = st.text(alphabet=ABC_BODY, max_size=300)
abc_tune = st.tuples(header, body).map(lambda hb: hb[0] + hb[1])
abc_file = st.lists(abc_tune, min_size=0, max_size=4).map(lambda ts: "\n".join(ts))
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252"]


def encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, "replace")


interleaved = st.tuples(
    st.lists(st.tuples(st.sampled_from("LMKV"), header_value), max_size=5),
    st.lists(
        st.lists(st.tuples(st.sampled_from(["1", "2", "x", ""]), st.text(alphabet=ABC_BODY, max_size=30)), max_size=3),
        max_size=8,
    ),
).map(
    lambda hb: (
        "".join(f"{k}:{v}\n" for k, v in hb[0])
        + "".join("".join(f"[V:{v}]{bar}" for v, bar in line) + "\n" for line in hb[1])
    )
)

# ------------------------------------------------------------------ the corpus readers


def _read_one(name: str, data: bytes) -> tuple[list, list]:
    """Read one file as the build reads it: (items, reject rows)."""
    from pipelines.data.sources import _items_from_file

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / name
        path.write_bytes(data)
        rejects: list = []
        items = _items_from_file(path, root, str(root), "fuzz", rejects, 2**20)
        return items, rejects


def _check_one_outcome(items: list, rejects: list) -> None:
    assert bool(items) != bool(rejects), (items, rejects)  # kept, or rejected once: never both, never neither
    assert len(rejects) <= 1
    for r in rejects:
        assert r.reason and "Error" not in r.reason and "Traceback" not in r.reason  # words, not exception names


@FUZZ
@given(text=abc_file, encoding=st.sampled_from(ENCODINGS))
def test_abc_files_in_any_encoding_are_kept_or_rejected_once(text, encoding):
    _check_one_outcome(*_read_one("tune.abc", encoded(text, encoding)))


@FUZZ
@given(data=st.binary(max_size=600), ext=st.sampled_from(["abc", "xml", "musicxml", "mxl", "krn"]), bom=st.booleans())
def test_random_bytes_under_every_score_extension_are_rejected_or_kept_once(data, ext, bom):
    # the issue-23 case: random bytes after a UTF-16 byte-order mark
    _check_one_outcome(*_read_one(f"x.{ext}", (b"\xff\xfe" if bom else b"") + data))


musicxml_text = st.tuples(
    st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0" encoding="latin-1"?>']),
    st.sampled_from(["<score-partwise>", "<score-timewise>", "<score-partwise version='4.0'>", "<other>"]),
    st.text(max_size=200),
).map(lambda t: f"{t[0]}\n{t[1]}{t[2]}")


@FUZZ
@given(text=musicxml_text, encoding=st.sampled_from(ENCODINGS), compressed=st.booleans())
def test_musicxml_and_compressed_musicxml_are_kept_or_rejected_once(text, encoding, compressed):
    data = encoded(text, encoding)
    if compressed:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("score.xml", data)
        _check_one_outcome(*_read_one("x.mxl", buf.getvalue()))
    else:
        _check_one_outcome(*_read_one("x.musicxml", data))


@FUZZ
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(["**kern", "*M4/4", "*k[f#]", "=1", "4c", "8d 8e", "*-", "!!!COM: x"]), st.text(max_size=20)
        ),
        max_size=12,
    ).map("\n".join),
    encoding=st.sampled_from(ENCODINGS),
)
def test_humdrum_files_are_kept_or_rejected_once(text, encoding):
    _check_one_outcome(*_read_one("x.krn", encoded(text, encoding)))


@FUZZ
@given(
    name=st.binary(min_size=1, max_size=120).filter(
        lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
    )
)
def test_any_file_name_is_read_or_rejected_once(name):
    from pipelines.data.sources import _items_from_file, shown

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        full = os.path.join(os.fsencode(tmp), name[:200] + b".abc")
        try:
            with open(full, "wb") as f:
                f.write(b"X:1\nM:4/4\nL:1/8\nK:C\nCDEF GABc|cBAG FEDC|]\n")
        except OSError:
            return  # a name the file system itself refuses (too long): nothing to read
        rejects: list = []
        items = _items_from_file(Path(os.fsdecode(full)), root, str(root), "fuzz", rejects, 2**20)
        _check_one_outcome(items, rejects)
        for it in items:
            assert len(it.piece_id) <= 150 and shown(it.path)  # a name shown in text, an id fit for a file name


@FUZZ
@given(text=abc_file)
def test_splitting_multi_tune_files_loses_no_tune(text):
    from pipelines.data.sources import split_abc_tunes

    tunes = split_abc_tunes(text)
    assert all(t.strip() for t in tunes)
    starts = sum(1 for line in text.splitlines() if line.startswith("X:"))
    assert len(tunes) <= max(1, starts + 1)


# ------------------------------------------------------------------ what reads generated music


@FUZZ
@given(text=interleaved)
def test_the_guards_and_music_statistics_read_any_generated_text(text):
    from evaluators.meter import meter_fill, time_signature
    from evaluators.music_stats import SCALARS, piece_music

    out = piece_music(text)
    assert set(out) == {"time_signature", "stats", "music"}
    if out["music"] is not None:
        assert set(out["music"]) == set(SCALARS)
        assert all(isinstance(v, float) for v in out["music"].values())
    fill = meter_fill(text)
    assert 0 <= fill.full <= fill.bars
    assert isinstance(time_signature(text), str)


# ------------------------------------------------------------------ configs, overrides, checkpoints, state


dotted = st.one_of(
    st.sampled_from(
        [
            "dpo.beta",
            "dpo.reward",
            "dpo.reward_k",
            "dpo.reward_contrast",
            "dpo.chosen_like_real",
            "dpo.direction_guard",
            "campaign.rounds",
            "campaign.seed",
            "data.eval_fraction",
            "evaluator.hard_negatives",
            "cluster.use_gpu",
            "sampling.top_p",
            "nosuch.field",
            "dpo.nosuch",
            "dpo",
            "",
        ]
    ),
    st.text(max_size=20),
)
value = st.one_of(
    st.text(max_size=20),
    st.sampled_from([".inf", "-.inf", ".nan", "1e309", "[]", "[meter, length]", "{a: 1}", "null", "yes", "-1", "0"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(str),
)


@FUZZ
@given(overrides=st.lists(st.tuples(dotted, value).map(lambda t: f"{t[0]}={t[1]}"), max_size=4))
def test_set_overrides_load_or_fail_naming_the_field(overrides):
    from orchestration.config import load_config

    try:
        load_config("default", overrides)
    except ConfigError as err:
        assert str(err).strip() and "\n" not in str(err).strip()


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_config_files_load_or_fail_naming_the_problem(data):
    from orchestration.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(data)
        try:
            load_config(str(path))
        except ConfigError as err:
            assert str(err).strip()


@settings(FUZZ, max_examples=max(10, FUZZ_EXAMPLES // 3))
@given(data=st.binary(max_size=400), zipped=st.booleans())
def test_checkpoint_files_are_read_or_refused_in_one_error(data, zipped):
    from base.checkpoints import read_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.pth"
        if zipped:  # a zip like torch's own files, with garbage inside
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("archive/data.pkl", data)
                z.writestr("archive/version", b"3\n")
        else:
            path.write_bytes(data)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)


state_text = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
)


@FUZZ
@given(campaign=state_text, marker=state_text, metrics=state_text)
def test_campaign_state_files_read_or_report_damage(campaign, marker, metrics):
    from pipelines.campaign.compare import read_rounds
    from pipelines.campaign.identity import read_state
    from pipelines.campaign.state import Markers

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "campaign.json").write_bytes(campaign)
        (root / "markers").mkdir()
        (root / "markers" / "real.json").write_bytes(marker)
        (root / "round-01").mkdir()
        (root / "round-01" / "metrics.json").write_bytes(metrics)
        try:
            read_state(root)
        except (ValueError, FileNotFoundError) as err:
            assert "campaign.json" in str(err)
        got, why = Markers(root).read("real")
        assert (got is None) or isinstance(got, dict)
        checked, problems = Markers(root).check("real")
        assert checked is None or not problems
        rows, unreadable = read_rounds(root)
        assert len(rows) + len(unreadable) == 1
        for r in rows:
            assert not math.isnan(float(r["round"]))


# ------------------------------------------------------------------ what the fuzzers found, kept as regular tests


def test_found_a_control_character_in_a_set_value_names_the_field():
    # Hypothesis: --set dpo.beta=\x08 escaped as yaml's ReaderError instead of a ConfigError naming the field
    from orchestration.config import load_config

    with pytest.raises(ConfigError, match=r"^dpo\.beta: '\\x08' is not a value"):
        load_config("default", ["dpo.beta=\x08"])
    with pytest.raises(ConfigError, match=r"^dpo\.chosen_like_real: '\[meter' is not a value"):
        load_config("default", ["dpo.chosen_like_real=[meter"])


def test_found_random_bytes_after_a_utf16_mark_are_one_reject_row():
    # issue 23: random bytes behind a UTF-16 byte-order mark stopped the whole build at the plausibility check
    items, rejects = _read_one("x.xml", b"\xff\xfe" + bytes(range(256)) * 2)
    assert not items and len(rejects) == 1 and "x.xml" in rejects[0].path


def test_found_an_impossible_metre_is_refused_before_any_converter_sees_it():
    # Hypothesis: a generated 'M:999999999/1' (header or inline) made abc2xml and music21 fill one bar with
    # rests for 15 s and gigabytes of memory, in the scorer that reads every sample; with many such examples the
    # machine ran out of memory. Now it is an invalid piece at once.
    import time

    from base.abc.score import roundtrip
    from evaluators.music_stats import piece_music

    for text in ("M:999999999/1\n[V:1]\n", "L:1/8\nM:4/4\nK:C\nV:1\n[V:1][M:99999/1]c2|\n", "L:1/3\nK:C\n[V:1]c|\n"):
        start = time.perf_counter()
        r = roundtrip(text)
        assert not r.ok and "impossible metre or note unit" in r.reason
        assert piece_music(text)["music"] is None
        assert time.perf_counter() - start < 5  # refused, not converted
    for fine in ("L:1/8\nM:12/8\nK:C\nV:1\n[V:1]c12|\n", "L:1/16\nM:C|\nK:C\nV:1\n[V:1]c16|\n"):
        assert roundtrip(fine).ok
