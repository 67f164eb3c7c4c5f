"""The corpus build end to end on small folders: outputs, rejects, cache, split and augmentation."""

import io
import json
import zipfile
from pathlib import Path

import pytest

from base.atomic import read_jsonl
from pipelines.data.build import BuildError, build_corpus
from pipelines.data.config import DataConfig
from tests.conftest import DUET, musicxml

LONG_TUNE = "X:9\nT:Endless Reel\nM:4/4\nL:1/8\nK:D\n" + "|".join(["DFAd fdAF", "GBdg bgdB"] * 40) + "|]\n"


def _cfg(tmp_path: Path, *sources: Path, **kw) -> DataConfig:
    kw.setdefault("workers", 1)
    kw.setdefault("eval_fraction", 0.3)
    return DataConfig(sources=[str(s) for s in sources], out_dir=str(tmp_path / "corpus"), **kw)


def _mxl(xml: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container><rootfiles><rootfile full-path="score.musicxml"/></rootfiles></container>',
        )
        z.writestr("score.musicxml", xml)
    return buf.getvalue()


def test_build_writes_corpus_layout(tmp_path: Path, score_dir: Path):
    result = build_corpus(_cfg(tmp_path, score_dir), progress=False)
    out = tmp_path / "corpus"
    manifest = read_jsonl(out / "manifest.jsonl")
    assert [p["id"] for p in manifest] == ["scores.canon", "scores.duet", "scores.reels.t0001", "scores.reels.t0002"]
    duet = next(p for p in manifest if p["id"] == "scores.duet")
    assert (duet["period"], duet["composer"], duet["instrumentation"]) == (
        "Baroque",
        "Bach, Johann Sebastian",
        "Strings",
    )
    assert (duet["bars"], duet["voices"]) == (4, 2)
    assert duet["chars"] == len((out / "interleaved" / "scores.duet.abc").read_text())
    assert len(duet["sha256"]) == 64 and duet["split"] in ("train", "eval")
    canon = next(p for p in manifest if p["id"] == "scores.canon")
    assert (canon["period"], canon["composer"]) == ("Classical", "Mozart, Wolfgang Amadeus")
    train_text = (out / "train" / "scores.duet.abc").read_text()
    assert train_text.startswith("%Baroque\n%Bach, Johann Sebastian\n%Strings\n%%score 1 2\n")
    assert "[V:1]g2 z2 z2 z2|\n" in train_text  # rest-only cello bar omitted
    assert "[V:1]" in (out / "interleaved" / "scores.reels.t0002.abc").read_text()
    index = read_jsonl(out / "train.jsonl") + read_jsonl(out / "eval.jsonl")
    assert sorted(r["id"] for r in index) == sorted(p["id"] for p in manifest)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pieces"] == 4 and summary["converted_now"] == 4 and summary["rejected"] == 0
    assert result.summary == summary


def test_every_bad_input_class_is_rejected_with_its_reason(tmp_path: Path, score_dir: Path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good_xml = musicxml(DUET)
    (bad / "empty.abc").write_bytes(b"")
    (bad / "binary.xml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (bad / "truncated.mxl").write_bytes(_mxl(good_xml)[:150])
    (bad / "truncated.musicxml").write_text(good_xml[: len(good_xml) // 2])
    (bad / "latin1.abc").write_bytes("X:1\nT:Caf\xe9\nK:C\nCDEF|GABc|\n".encode("latin-1"))
    (bad / "notes.pdf").write_bytes(b"%PDF-1.4")
    (bad / "garbage.krn").write_text("**kern\nthis is not humdrum at all\n*-\n")
    (bad / "webpage.xml").write_text('<?xml version="1.0"?><html><body>not a score</body></html>')
    (bad / "long.abc").write_text(LONG_TUNE)
    result = build_corpus(_cfg(tmp_path, score_dir, bad, max_chars=600), progress=False)
    rejected = {Path(r["path"]).name: r for r in read_jsonl(tmp_path / "corpus" / "rejected.jsonl")}
    expect = {
        "empty.abc": ("read", "empty file"),
        "binary.xml": ("read", "binary content"),
        "truncated.mxl": ("convert", "truncated or corrupt .mxl"),
        "truncated.musicxml": ("convert", "xml2abc"),
        "latin1.abc": ("read", "not UTF-8"),
        "notes.pdf": ("read", "unsupported extension '.pdf'"),
        "garbage.krn": ("convert", "holds no notes"),
        "webpage.xml": ("read", "not MusicXML: no <score-partwise>"),
        "long.abc": ("filter", "over the length limit"),
    }
    assert set(rejected) == set(expect)
    for name, (stage, reason) in expect.items():
        assert rejected[name]["stage"] == stage, (name, rejected[name])
        assert reason in rejected[name]["reason"], (name, rejected[name])
    # the good pieces beside them still made it
    assert {p["id"] for p in result.pieces} >= {"scores.duet", "scores.canon"}
    assert result.summary["rejects_by_reason"]["read: empty file"] == 1


def test_rebuild_converts_nothing_new(tmp_path: Path, score_dir: Path):
    first = build_corpus(_cfg(tmp_path, score_dir, augment_keys=True), progress=False)
    assert first.converted == 4
    out = tmp_path / "corpus"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.abc")}
    second = build_corpus(_cfg(tmp_path, score_dir, augment_keys=True), progress=False)
    assert (second.converted, second.augmented) == (0, 0)
    assert read_jsonl(out / "manifest.jsonl") == [dict(p) for p in second.pieces]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.abc")} == before  # nothing rewritten
    # one new file: only it is converted; a removed file's outputs go away
    (score_dir / "extra.abc").write_text("X:1\nT:Extra\nM:3/4\nL:1/8\nK:A\nABc|dcB|A3|E3|ABc|dcB|A3|A3|]\n")
    (score_dir / "canon.krn").unlink()
    third = build_corpus(_cfg(tmp_path, score_dir, augment_keys=True), progress=False)
    assert third.converted == 1
    assert not (out / "interleaved" / "scores.canon.abc").exists()
    assert (out / "interleaved" / "scores.extra.abc").exists()


def test_split_by_work_keeps_transposed_copies_out_of_train(tmp_path: Path, score_dir: Path):
    for n in range(1, 4):  # three movements of one work next to the single pieces
        mv = score_dir / "opus7"
        mv.mkdir(exist_ok=True)
        (mv / f"movement{n}.musicxml").write_text(musicxml(DUET, title=f"Movement {n}", composer="Haydn"))
        (score_dir / f"song{n}.abc").write_text(f"X:1\nT:Song {n}\nM:2/4\nL:1/8\nK:G\nGA|Bc|dB|AG|GA|Bd|cA|G2|]\n")
    cfg = _cfg(tmp_path, score_dir, augment_keys=True, eval_fraction=0.4, seed=1)
    result = build_corpus(cfg, progress=False)
    by_work: dict[str, set[str]] = {}
    for p in result.pieces:
        by_work.setdefault(p["work"], set()).add(p["split"])
    assert all(len(s) == 1 for s in by_work.values()), by_work  # a work is never split across sides
    out = tmp_path / "corpus"
    eval_ids = {r["id"] for r in read_jsonl(out / "eval.jsonl")}
    train_rows = read_jsonl(out / "train.jsonl")
    assert eval_ids and train_rows
    assert not eval_ids & {r["id"] for r in train_rows}
    # training pieces come in NotaGen's 15 keys; eval pieces only in their own key
    train_piece = next(p for p in result.pieces if p["split"] == "train")
    assert len(train_piece["files"]["train"]) == 16
    assert any(f.endswith("_Fs.abc") for f in train_piece["files"]["train"])
    eval_piece = next(p for p in result.pieces if p["split"] == "eval")
    assert eval_piece["files"]["train"] == [f"train/{eval_piece['id']}.abc"]
    # deterministic for a seed
    again = build_corpus(cfg, progress=False)
    assert [p["split"] for p in again.pieces] == [p["split"] for p in result.pieces]


def test_the_same_music_twice_is_kept_once(tmp_path: Path, score_dir: Path):
    (score_dir / "copy_of_duet.musicxml").write_text((score_dir / "duet.musicxml").read_text())
    result = build_corpus(_cfg(tmp_path, score_dir), progress=False)
    ids = {p["id"] for p in result.pieces}
    assert "scores.copy_of_duet" in ids and "scores.duet" not in ids  # the first by id is kept
    dup = [r for r in result.rejects if r["reason"].startswith("duplicate")]
    assert len(dup) == 1 and "same music as scores.copy_of_duet" in dup[0]["reason"]
    assert result.summary["rejects_by_reason"] == {"filter: duplicate": 1}


def test_nothing_produced_is_an_error_that_says_why(tmp_path: Path):
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "a.abc").write_bytes(b"")
    (bad / "b.txt").write_text("hello")
    with pytest.raises(BuildError, match=r"no pieces produced .*empty file"):
        build_corpus(_cfg(tmp_path, bad), progress=False)
    assert len(read_jsonl(tmp_path / "corpus" / "rejected.jsonl")) == 2


def test_ensure_corpus_builds_once(tmp_path: Path, score_dir: Path):
    from pipelines.data.build import ensure_corpus

    cfg = _cfg(tmp_path, score_dir)
    out = ensure_corpus(cfg, progress=False)
    index = out / "train.jsonl"
    assert index.is_file()
    stamp = index.stat().st_mtime_ns
    assert ensure_corpus(cfg, progress=False) == out and index.stat().st_mtime_ns == stamp  # not rebuilt
