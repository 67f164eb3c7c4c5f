"""Finding the pieces to convert: music21's bundled corpus and user folders of scores.

Each piece becomes a ``SourceItem`` holding its raw bytes, so the content hash (the key of the
conversion cache) is computed once and workers never touch the file system to read inputs. Files
that cannot be a score (wrong extension, empty, binary, not UTF-8) are turned into ``Reject`` rows
here, before any conversion is attempted.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from base.errors import describe
from base.typed_config import ConfigError
from pipelines.data.config import SOURCE_MUSIC21, DataConfig

# extension → format name used by the converter
SUPPORTED_EXTENSIONS = {".xml": "musicxml", ".musicxml": "musicxml", ".mxl": "mxl", ".krn": "kern", ".abc": "abc"}
TEXT_FORMATS = {"musicxml", "kern", "abc"}
_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_TITLE = re.compile(r"^T:\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class SourceItem:
    """One piece to convert (a file, or one tune of a multi-tune ABC file)."""

    piece_id: str
    source: str  # "music21:<collection>" or the user folder it came from
    path: str  # the file it was read from
    fmt: str  # musicxml | mxl | kern | abc
    data: bytes = field(repr=False)
    collection: str  # music21 collection, or the user folder's name
    work_id: str  # pieces of one work share it, so the split never separates them
    tune: int | None = None  # 1-based position of the tune in a multi-tune ABC file
    sha256: str = field(default="", compare=False)
    real: str = field(default="", compare=False)  # the file's resolved path: two names of one file are one piece
    via_link: bool = field(default=False, compare=False)  # read through a symbolic link

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.fmt.encode() + b"\0" + self.data).hexdigest())


@dataclass(frozen=True)
class Reject:
    """A file or piece that did not make it into the corpus, and why (one row of rejected.jsonl)."""

    path: str
    stage: str  # read | convert | clean | interleave | filter | metadata
    reason: str
    piece_id: str | None = None

    def to_row(self) -> dict:
        return {"path": self.path, "stage": self.stage, "reason": self.reason, "id": self.piece_id}


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def split_abc_tunes(text: str) -> list[str]:
    """Split a multi-tune ABC file on ``X:`` lines; a file preamble (before the first X:) goes with every tune."""
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    if not starts:
        return [text] if text.strip() else []
    preamble = text[: starts[0]]
    # A preamble of only comments and blank lines carries no settings worth repeating.
    keep = (
        preamble
        if any(ln.strip() and not ln.startswith("%") or ln.startswith("%%") for ln in preamble.splitlines())
        else ""
    )
    bounds = starts + [len(text)]
    return [keep + text[a:b] for a, b in zip(bounds, bounds[1:]) if text[a:b].strip()]


def check_bytes(data: bytes, fmt: str) -> str | None:
    """Why these bytes cannot be a score of this format, or None if they may be."""
    if not data.strip():
        return "empty file"
    if fmt == "mxl":
        if not data.startswith(b"PK"):
            return "not a zip archive (an .mxl must be compressed MusicXML)"
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) and fmt == "musicxml":
        return None  # UTF-16 MusicXML: the XML parser reads its declared encoding
    if b"\0" in data:
        return "binary content (NUL bytes) in a text score format"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        if fmt == "musicxml" and re.match(rb"<\?xml[^>]*encoding=[\"'](?!utf-?8)", data[:200], re.I):
            return None  # declares its own encoding, which the XML parser honours
        if fmt == "kern" and _latin1_only_in_comments(data):
            return None  # legacy Humdrum: Latin-1 reference records around UTF-8-clean music
        return f"not UTF-8 text ({err.reason} at byte {err.start})"
    return None


_ABC_KEY = re.compile(rb"^\s*K:", re.MULTILINE)
_KERN_SPINE = re.compile(rb"^\*\*", re.MULTILINE)


def implausible(data: bytes, fmt: str) -> str | None:
    """Why readable text is still not a score of this format (random bytes, a stray text file), or None.

    Converters are lenient (abc2xml made a 22-bar piece of random printable bytes), so the structure each
    format requires is checked here: ABC's K: field and a bar line, MusicXML's score element, Humdrum's
    ``**`` spine.
    """
    if fmt == "abc":
        if not _ABC_KEY.search(data):
            return "not ABC music: no K: (key) field"
        if b"|" not in data:
            return "not ABC music: no bar line"
        share = _abc_alphabet_share(data.decode("utf-8", "replace"))
        if share < 0.8:
            return f"not ABC music: only {share:.0%} of the tune body is ABC notation"
    elif fmt == "musicxml":
        # UTF-16 (its byte-order mark): searched as text; bytes that are no UTF-16 cannot hide an element
        text = data.decode("utf-16", "replace").encode() if data.startswith((b"\xff\xfe", b"\xfe\xff")) else data
        if b"<score-partwise" not in text and b"<score-timewise" not in text:
            return "not MusicXML: no <score-partwise> or <score-timewise> element"
    elif fmt == "kern" and not _KERN_SPINE.search(data):
        return "not Humdrum **kern: no ** spine"
    return None


_ABC_MUSIC = set("ABCDEFGabcdefgzZxXyTHLMOPSuv0123456789/|:[]()^_=,'<>-~.!+{} \t")
_QUOTED = re.compile(r'"[^"\n]*"')


def _abc_alphabet_share(text: str) -> float:
    """Share of the tune body's characters that ABC notation uses (quoted text, fields and comments aside)."""
    body = [
        _QUOTED.sub("", ln.split("%", 1)[0])
        for ln in text.splitlines()
        if ln.strip() and not re.match(r"^\s*(?:[A-Za-z]:|%)", ln)
    ]
    chars = "".join(body)
    if not chars:
        return 1.0  # inline-field-only tunes are judged by the converter
    return sum(c in _ABC_MUSIC for c in chars) / len(chars)


def _latin1_only_in_comments(data: bytes) -> bool:
    for line in data.split(b"\n"):
        if not line.isascii() and not line.startswith(b"!"):
            return False
    return True


def normalize_text(data: bytes, fmt: str) -> bytes:
    """UTF-8 bytes for text formats that ``check_bytes`` accepted in a legacy encoding."""
    if fmt != "kern":
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8")


def _work_of(collection: str, rel: Path, title: str | None) -> str:
    if len(rel.parts) > 1:  # movements of one work sit in one folder (beethoven/opus18no1/...)
        return f"{collection}/{rel.parts[0]}"
    if title:
        return f"{collection}/title:{slug(title).lower()}"
    return f"{collection}/{rel.with_suffix('').as_posix()}"


def shown(path: str | Path) -> str:
    """A path as text that any file name survives: bytes that are not UTF-8 appear as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _items_from_file(
    path: Path, root: Path, source: str, collection: str, rejects: list[Reject], max_bytes: int
) -> list[SourceItem]:
    """The pieces of one file, or one reject row for it: whatever the file holds, reading it (size, bytes,
    decoding, plausibility, splitting) never raises, so one file can never stop a build."""
    rel = Path(shown(path.relative_to(root)))
    base_id = bounded_id(f"{slug(collection)}.{'.'.join(slug(p) for p in rel.with_suffix('').parts)}")
    name = shown(path)
    mine: list[Reject] = []
    try:
        items = _read_file(path, rel, base_id, name, source, collection, mine, max_bytes)
    except Exception as err:  # anything a hostile file makes a reader do: a reject row that says why, in words
        rejects.append(Reject(name, "read", f"cannot be read: {describe(err)}", base_id))
        return []
    rejects.extend(mine)
    return items


def _read_file(
    path: Path,
    rel: Path,
    base_id: str,
    name: str,
    source: str,
    collection: str,
    rejects: list[Reject],
    max_bytes: int,
) -> list[SourceItem]:
    fmt = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        rejects.append(Reject(name, "read", f"unsupported extension {shown(path.suffix) or '(none)'!r}", base_id))
        return []
    try:
        size = path.stat().st_size
        if size > max_bytes:
            rejects.append(
                Reject(
                    name,
                    "read",
                    f"{size / 2**20:.1f} MB is over the size cap of {max_bytes / 2**20:g} MB (data.max_file_mb)",
                    base_id,
                )
            )
            return []
        data = path.read_bytes()
    except OSError as err:
        rejects.append(Reject(name, "read", f"cannot read: {err.strerror or err}", base_id))
        return []
    problem = check_bytes(data, fmt) or implausible(data, fmt)
    if problem:
        rejects.append(Reject(name, "read", problem, base_id))
        return []
    data = normalize_text(data, fmt)
    real, link = shown(os.path.realpath(path)), path.is_symlink()
    if fmt != "abc":
        work = _work_of(collection, rel, None)
        return [SourceItem(base_id, source, name, fmt, data, collection, work, real=real, via_link=link)]
    tunes = split_abc_tunes(data.decode("utf-8"))
    if not tunes:
        rejects.append(Reject(name, "read", "no ABC tune in file", base_id))
        return []
    items = []
    for i, tune in enumerate(tunes, start=1):
        m = _TITLE.search(tune)
        title = m.group(1).strip() if m else None
        pid = base_id if len(tunes) == 1 else f"{base_id}.t{i:04d}"
        work = _work_of(collection, rel, title) if len(tunes) > 1 else _work_of(collection, rel, None)
        items.append(
            SourceItem(
                pid,
                source,
                name,
                "abc",
                tune.encode("utf-8"),
                collection,
                work,
                tune=i if len(tunes) > 1 else None,
                real=real,
                via_link=link,
            )
        )
    return items


def _walk(root: Path, rejects: list[Reject] | None = None) -> list[Path]:
    """The files under ``root`` to consider, in a stable order; every link, folder and other entry that is not
    read gets one reject row. Links are followed only to files inside ``root``; hidden entries are skipped."""
    out: list[Path] = []
    real_root = os.path.realpath(root)

    def reject(path: Path, reason: str) -> None:
        if rejects is not None:
            rejects.append(Reject(shown(path), "read", reason))

    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        for d in sorted(dirs):
            path = here / d
            if d.startswith("."):
                reject(path, "a hidden folder: skipped")
            elif path.is_symlink():
                reject(path, "a link to a folder: not followed")
            elif path.suffix.lower() in SUPPORTED_EXTENSIONS:
                reject(path, "a folder named like a score file (its contents are read as any folder's)")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for f in sorted(files):
            path = here / f
            if f.startswith("."):
                reject(path, "a hidden file: skipped")
            elif path.is_symlink():
                target = os.path.realpath(path)
                if not os.path.exists(target):
                    reject(path, "a link that leads nowhere (dangling, or a loop): not followed")
                elif os.path.commonpath([real_root, target]) != real_root:
                    reject(path, "a link to a file outside the source folder: not followed")
                elif not os.path.isfile(target):
                    reject(path, "a link to something that is not a file: not followed")
                else:
                    out.append(path)
            elif not path.is_file():
                reject(path, "not a regular file (a pipe, socket or device)")
            else:
                out.append(path)
    return sorted(out, key=lambda p: os.fsencode(p))


def _sample(items: list[SourceItem], n: int, seed: int, salt: str) -> list[SourceItem]:
    if n <= 0 or len(items) <= n:
        return items
    rng = random.Random(f"{seed}:{salt}")
    return sorted(rng.sample(sorted(items, key=lambda it: it.piece_id), n), key=lambda it: it.piece_id)


def enumerate_sources(cfg: DataConfig) -> tuple[list[SourceItem], list[Reject]]:
    """All pieces named by the config, and the files rejected while reading them."""
    items: list[SourceItem] = []
    rejects: list[Reject] = []
    max_bytes = int(cfg.max_file_mb * 2**20)
    for source in cfg.sources:
        if source == SOURCE_MUSIC21:
            corpus = music21_corpus_dir()
            available = sorted(p.name for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
            for collection in cfg.collections:
                folder = corpus / collection
                if not folder.is_dir():
                    raise ConfigError(
                        f"data.collections: unknown music21 collection {collection!r} "
                        f"(available: {', '.join(available)})"
                    )
                found: list[SourceItem] = []
                for path in _walk(folder):
                    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                        continue  # music21 ships analyses (.rntxt) beside the scores; they are not pieces
                    found.extend(
                        _items_from_file(path, folder, f"music21:{collection}", collection, rejects, max_bytes)
                    )
                items.extend(_sample(found, cfg.collection_limits.get(collection, 0), cfg.seed, collection))
        else:
            root = Path(source).expanduser()
            if not root.is_dir():
                raise ConfigError(f"data.sources: {source!r} is neither 'music21' nor an existing folder")
            collection = slug(root.resolve().name)
            found = []
            for path in _walk(root, rejects):
                found.extend(_items_from_file(path, root, shown(root), collection, rejects, max_bytes))
            items.extend(_sample(found, cfg.collection_limits.get(collection, 0), cfg.seed, collection))
    seen_files: dict[tuple[str, int | None], str] = {}
    ids: set[str] = set()
    unique = []
    for it in sorted(items, key=lambda it: it.via_link):  # a file's own name wins over a link's
        key = (it.real or it.path, it.tune)
        if key in seen_files:  # two sources (or a file and a link to it) name the same file
            rejects.append(Reject(it.path, "read", f"the same file as {seen_files[key]}", it.piece_id))
            continue
        seen_files[key] = it.path
        it = replace(it, piece_id=unique_id(it.piece_id, it.path, ids))
        ids.add(it.piece_id)
        unique.append(it)
    return _sample(unique, cfg.limit, cfg.seed, "limit"), rejects


MAX_ID = 150  # ids name files (<id>_<KEY>.abc); most file systems allow 255 bytes


def bounded_id(piece_id: str) -> str:
    """``piece_id`` cut to MAX_ID characters, the cut part replaced by its hash so ids stay distinct."""
    if len(piece_id) <= MAX_ID:
        return piece_id
    return f"{piece_id[: MAX_ID - 13]}-{hashlib.sha256(piece_id.encode()).hexdigest()[:12]}"


def unique_id(piece_id: str, path: str, taken: set[str]) -> str:
    """``piece_id``, or a variant of it no other piece has: "x.mxl" beside "x.krn" gets its extension, "x-y.xml"
    beside "x.y.xml" (one slug) a short hash of its path; the same inputs always give the same ids."""
    if piece_id not in taken:
        return piece_id
    candidate = f"{piece_id}-{slug(Path(path).suffix.lstrip('.').lower())}"
    digest = hashlib.sha256(path.encode("utf-8", "backslashreplace")).hexdigest()
    k = 6
    while candidate in taken:
        candidate = f"{piece_id}-{digest[:k]}"
        k += 2
        if k > len(digest):
            candidate = f"{piece_id}-{digest}-{len(taken)}"
    return candidate


def mxl_inner_score(data: bytes) -> bytes:
    """The MusicXML document inside an .mxl (the rootfile of META-INF/container.xml, whatever its extension)."""
    import io
    import xml.etree.ElementTree as ET

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        target = None
        if "META-INF/container.xml" in names:
            root = ET.fromstring(z.read("META-INF/container.xml"))
            for el in root.iter():
                if el.tag.endswith("rootfile") and el.get("full-path"):
                    target = el.get("full-path")
                    break
        if target is None or target not in names:
            candidates = [
                n for n in names if not n.startswith("META-INF") and n.lower().endswith((".xml", ".musicxml"))
            ]
            if not candidates:
                raise ValueError("no MusicXML document inside the .mxl archive")
            target = candidates[0]
        return z.read(target)
