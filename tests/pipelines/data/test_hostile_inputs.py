"""The corpus build over a few hundred generated inputs of every hostile kind: malformed scores, random bytes,
inputs that hang or swell a converter, odd file names, colliding ids, links in and out of the source folder,
things that are not files. Seeded, so each run builds the same folder. The build must end (each input costs at
most its limits), keep every valid file exactly once, give everything else exactly one reject row, and say
why in words (never a Python exception's name)."""

from __future__ import annotations

import os
import random
import re
import string
from pathlib import Path

import pytest

from base.atomic import read_jsonl
from pipelines.data.build import build_corpus
from pipelines.data.config import DataConfig
from pipelines.data.sources import shown
from tests.conftest import DUET, musicxml

NOTES = "CDEFGABcdefgab"


def _tune(rng: random.Random, bars: int = 6) -> str:
    """A valid folk tune in 4/4: every bar holds eight eighth notes."""
    body = "|".join("".join(rng.choice(NOTES) for _ in range(8)) for _ in range(bars))
    return f"X:1\nT:Tune {rng.randrange(10**6)}\nC:Trad.\nM:4/4\nL:1/8\nK:{rng.choice('CDGF')}\n{body}|]\n"


def _variant(parts: list, note: str) -> list:
    """The same parts with every C replaced by ``note``: other music, so not a duplicate."""
    return [(name, [[n.replace("C", note) for n in bar] for bar in bars]) for name, bars in parts]


class Folder:
    """The generated source folder and what each entry in it is expected to become."""

    def __init__(self, root: Path):
        self.root = root
        self.valid: set[str] = set()  # must be kept, once
        self.rejected: set[str] = set()  # must get a reject row
        self.either: set[str] = set()  # malformed but maybe readable: exactly one outcome, whichever

    def write(self, name: str | bytes, data: bytes, kind: str) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(self.root), os.fsencode(name))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        getattr(self, kind).add(shown(path))
        return path

    def entry(self, path: Path, kind: str) -> None:
        getattr(self, kind).add(shown(path))


def generate(root: Path, seed: int = 0) -> Folder:
    rng = random.Random(seed)
    f = Folder(root)
    xml = musicxml(DUET).encode()
    for i in range(30):
        f.write(f"valid/tune{i:02d}.abc", _tune(rng).encode(), "valid")
    f.write("valid/duet.musicxml", xml, "valid")
    wide = musicxml(_variant(DUET, "D")).replace('encoding="UTF-8"', 'encoding="UTF-16"')
    f.write("valid/utf16.xml", wide.encode("utf-16"), "valid")
    for i in range(80):  # random printable text named as a score
        text = "".join(rng.choice(string.printable) for _ in range(rng.randrange(200, 3000)))
        f.write(f"printable/p{i:02d}.{rng.choice(['abc', 'xml', 'krn'])}", text.encode(), "rejected")
    for i in range(50):  # random binary
        f.write(f"binary/b{i:02d}.{rng.choice(['abc', 'xml', 'mxl', 'krn'])}", rng.randbytes(600), "rejected")
    for i in range(25):  # truncated MusicXML
        f.write(f"truncated/t{i:02d}.musicxml", xml[: rng.randrange(200, len(xml) - 50)], "rejected")
    for i in range(30):  # ABC with a valid header and a broken body
        head = "X:1\nT:Broken\nM:3/4\nL:1/8\nK:G\n"
        body = rng.choice(
            [
                "V:1\nV:2\n[V:1]abc|def|\n[V:2]ABC|\n",  # voices with unequal bar counts
                "(9abc|" * 3 + "\n",  # a tuplet that never ends
                "[[[[abc]]|" * 4 + "\n",
                "a" * rng.randrange(1, 5) + "|" + "z/0|" * 3 + "\n",  # a zero-length rest
                "K:H#m\nabc|abc|\n",  # a key that is no key
                "{" * 30 + "abc|\n",
            ]
        )
        f.write(f"broken/m{i:02d}.abc", (head + body).encode(), "either")
    for i in range(3):  # nested brackets: quadratic in abc2xml, stopped by the time limit
        f.write(
            f"slow/nested{i}.abc",
            ("X:1\nM:4/4\nL:1/8\nK:C\n" + "[" * 3000 + "c" + "]" * 3000 + "|\n").encode(),
            "rejected",
        )
    f.write("slow/longline.abc", ("X:1\nM:4/4\nL:1/8\nK:C\n" + "cdef gabc|" * 15000 + "\n").encode(), "either")
    f.write("big/huge.abc", ("X:1\nM:4/4\nL:1/8\nK:C\n" + "cdefgabc|\n" * 120_000).encode(), "rejected")
    for name in ("empty.abc", "blank.xml", "empty.krn"):
        f.write(f"empty/{name}", b"" if "empty" in name else b"  \n\n", "rejected")
    for name in ("notes.pdf", "README", "cover.png", "data.json"):
        f.write(f"other/{name}", b"not a score", "rejected")
    f.write(".hidden.abc", _tune(rng).encode(), "rejected")
    # odd but legal names: bytes that are not UTF-8, spaces, a newline, other scripts, the longest name allowed
    odd = [
        b"caf\xe9.abc",
        b"\xff\xfe.abc",
        "with space.abc",
        "new\nline.abc",
        "мелодия.abc",
        "曲.abc",
        "x" * 251 + ".abc",
    ]
    for name in odd:
        f.write(b"names/" + (name if isinstance(name, bytes) else name.encode()), _tune(rng).encode(), "valid")
    # names whose ids collide: one slug for all of them
    for name in ("x-y.abc", "x.y.abc", "x y.abc", "x--y.abc", "x-y.xml"):
        data = musicxml(_variant(DUET, "E")).encode() if name.endswith(".xml") else _tune(rng).encode()
        f.write(f"collide/{name}", data, "valid")
    # links: inside the folder (one piece, the other name a row), out of it, dangling, a loop, to a folder
    target = f.write("links/target.abc", _tune(rng).encode(), "valid")
    (root / "links" / "inside.abc").symlink_to(target)
    f.entry(root / "links" / "inside.abc", "rejected")
    outside = root.parent / "outside.abc"
    outside.write_text(_tune(rng))
    (root / "links" / "outside.abc").symlink_to(outside)
    f.entry(root / "links" / "outside.abc", "rejected")
    (root / "links" / "dangling.abc").symlink_to(root / "nowhere.abc")
    f.entry(root / "links" / "dangling.abc", "rejected")
    (root / "links" / "loop1.abc").symlink_to(root / "links" / "loop2.abc")
    (root / "links" / "loop2.abc").symlink_to(root / "links" / "loop1.abc")
    f.entry(root / "links" / "loop1.abc", "rejected")
    f.entry(root / "links" / "loop2.abc", "rejected")
    (root / "links" / "folder").symlink_to(root / "valid", target_is_directory=True)
    f.entry(root / "links" / "folder", "rejected")
    # things that are not files
    os.mkfifo(root / "pipe.abc")
    f.entry(root / "pipe.abc", "rejected")
    (root / "looks.xml").mkdir()
    f.entry(root / "looks.xml", "rejected")
    f.write("looks.xml/inner.abc", _tune(rng).encode(), "valid")
    # duplicates of content: the same music twice is one piece and one reject
    dup = _tune(rng).encode()
    f.write("dups/a.abc", dup, "valid")
    f.write("dups/b.abc", dup, "rejected")
    return f


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX file kinds")
def test_hostile_folder_builds_in_bounded_time_with_every_input_accounted_for(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    folder = generate(src)
    entries = folder.valid | folder.rejected | folder.either
    assert len(entries) >= 250
    cfg = DataConfig(
        sources=[str(src)],
        out_dir=str(tmp_path / "corpus"),
        workers=2,
        eval_fraction=0.2,
        min_bars=2,
        max_file_mb=1.0,
        convert_timeout_s=4.0,
        convert_memory_mb=512,
    )
    result = build_corpus(cfg, progress=False)
    rows = read_jsonl(tmp_path / "corpus" / "rejected.jsonl")
    kept = [p["path"] for p in result.pieces]
    rejected = [r["path"] for r in rows]
    outcomes = kept + rejected
    # every entry has exactly one outcome, and nothing else has one
    assert sorted(outcomes) == sorted(entries), sorted(set(outcomes) ^ entries)[:10]
    assert folder.valid <= set(kept), sorted(folder.valid - set(kept))[:5]
    assert folder.rejected <= set(rejected), sorted(folder.rejected - set(rejected))[:5]
    # ids unique, and written once each
    ids = [p["id"] for p in result.pieces]
    assert len(ids) == len(set(ids))
    written = sorted(p.name for p in (tmp_path / "corpus" / "interleaved").iterdir())
    assert written == sorted(f"{i}.abc" for i in ids)
    # reasons in words
    for r in rows:
        assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b|Traceback", r["reason"]), r
    reasons = {shown(Path(r["path"])).rsplit("/", 1)[-1]: r["reason"] for r in rows}
    assert "took longer than 4 s" in reasons["nested0.abc"]
    assert "size cap" in reasons["huge.abc"]
    assert "outside the source folder" in reasons["outside.abc"]
    assert "leads nowhere" in reasons["dangling.abc"] and "leads nowhere" in reasons["loop1.abc"]
    assert "same file as" in reasons["inside.abc"]
    assert "not a regular file" in reasons["pipe.abc"]
    assert "folder named like a score" in reasons["looks.xml"]
    assert all("not ABC music" in reasons[f"p{i:02d}.abc"] for i in range(80) if f"p{i:02d}.abc" in reasons)
