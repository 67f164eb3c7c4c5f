"""Finding pieces: multi-tune ABC splitting, byte checks, ids and works."""

from pathlib import Path

import pytest

from base.typed_config import ConfigError
from pipelines.data.config import DataConfig
from pipelines.data.sources import check_bytes, enumerate_sources, split_abc_tunes
from tests.conftest import FOLK_ABC


def test_split_multi_tune_abc_on_x_lines():
    tunes = split_abc_tunes(FOLK_ABC)
    assert len(tunes) == 2
    assert tunes[0].startswith("X:1\nT:First Reel")
    assert tunes[1].startswith("X:2\nT:Second Jig")
    assert "Second Jig" not in tunes[0]
    # a comment-only preamble is not repeated in front of every tune
    assert not any(t.startswith("%") for t in tunes)


def test_split_keeps_a_settings_preamble_with_every_tune():
    text = "%%abc-version 2.1\nM:3/4\n\nX:1\nT:A\nK:C\nCDE|\n\nX:2\nT:B\nK:G\nGAB|\n"
    tunes = split_abc_tunes(text)
    assert len(tunes) == 2
    assert all(t.startswith("%%abc-version 2.1\nM:3/4\n") for t in tunes)


def test_file_without_x_is_one_tune():
    assert split_abc_tunes("T:Solo\nK:C\nCDEF|GABc|\n") == ["T:Solo\nK:C\nCDEF|GABc|\n"]


@pytest.mark.parametrize(
    "data,fmt,reason",
    [
        (b"", "abc", "empty file"),
        (b"  \n\n", "musicxml", "empty file"),
        (b"X:1\x00\x01\x02", "abc", "binary content"),
        ("X:1\nT:Caf\xe9\nK:C\nC|\n".encode("latin-1"), "abc", "not UTF-8"),
        (b"<score-partwise/>", "mxl", "not a zip archive"),
    ],
)
def test_check_bytes_names_the_problem(data, fmt, reason):
    assert reason in check_bytes(data, fmt)


def test_check_bytes_accepts_legacy_encodings_where_formats_allow_them():
    assert check_bytes('<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>'.encode("latin-1"), "musicxml") is None
    assert check_bytes("!!!COM: Josqu\xe9n\n**kern\n4c\n*-\n".encode("latin-1"), "kern") is None
    assert check_bytes("**kern\n4c\xe9\n*-\n".encode("latin-1"), "kern") is not None


def test_enumerate_user_folder(score_dir: Path):
    items, rejects = enumerate_sources(DataConfig(sources=[str(score_dir)]))
    assert rejects == []
    ids = sorted(it.piece_id for it in items)
    assert ids == ["scores.canon", "scores.duet", "scores.reels.t0001", "scores.reels.t0002"]
    by_id = {it.piece_id: it for it in items}
    assert by_id["scores.reels.t0002"].data.decode().startswith("X:2")
    assert by_id["scores.reels.t0001"].tune == 1
    # tunes of one file are different works (by title); the content hash identifies the bytes
    assert by_id["scores.reels.t0001"].work_id != by_id["scores.reels.t0002"].work_id
    assert len({it.sha256 for it in items}) == 4


def test_movements_in_a_folder_are_one_work(tmp_path: Path, score_dir: Path):
    opus = score_dir / "opus1"
    opus.mkdir()
    for n in (1, 2):
        (opus / f"movement{n}.musicxml").write_text((score_dir / "duet.musicxml").read_text().replace("Duet", f"M{n}"))
    items, _ = enumerate_sources(DataConfig(sources=[str(score_dir)]))
    works = {it.piece_id: it.work_id for it in items}
    assert works["scores.opus1.movement1"] == works["scores.opus1.movement2"] == "scores/opus1"


def test_music21_collection_limits_are_seeded_samples():
    cfg = DataConfig(collections=["bach"], collection_limits={"bach": 5}, seed=3)
    a, _ = enumerate_sources(cfg)
    b, _ = enumerate_sources(cfg)
    c, _ = enumerate_sources(DataConfig(collections=["bach"], collection_limits={"bach": 5}, seed=4))
    assert [i.piece_id for i in a] == [i.piece_id for i in b]
    assert len(a) == 5 and [i.piece_id for i in a] != [i.piece_id for i in c]
    assert all(i.source == "music21:bach" for i in a)


def test_unknown_collection_and_missing_folder_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.collections: unknown music21 collection 'nope'"):
        enumerate_sources(DataConfig(collections=["nope"]))
    with pytest.raises(ConfigError, match="data.sources"):
        enumerate_sources(DataConfig(sources=[str(tmp_path / "missing")]))
