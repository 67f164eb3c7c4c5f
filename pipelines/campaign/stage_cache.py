"""Trained set-up stages kept across campaigns: a policy or an evaluator is trained once per corpus and config.

A campaign's SFT policy, evaluator and judge depend only on the corpus and their own config sections, so two
campaigns that differ in their rounds (another seed, another DPO setting) start from the same parts. They
are kept under ``campaign.cache_dir``, one folder per (kind, key), where the key hashes the corpus's content
(its manifest and split indexes) and the config sections that shape the result; a folder counts only when
its ``cache.json`` and the files it lists are there, so a half-copied entry is never used. ``campaign run
--no-cache`` trains them again and replaces the entries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from base import atomic

CORPUS_FILES = ("manifest.jsonl", "train.jsonl", "eval.jsonl")
# Fields that say where a result goes or how fast it is made, not what it is.
IGNORED = (
    "out_dir",
    "device",
    "tracking_uri",
    "ray_address",
    "resume",
    "max_minutes",
    "eval_every",
    "log_every",
    "save_every",
    "keep_checkpoints",
    "feature_batch_size",
)


def corpus_fingerprint(corpus: str | Path) -> str:
    """A hash of a built corpus's manifest and split indexes (the pieces, their prompts and their split)."""
    h = hashlib.sha256()
    for name in CORPUS_FILES:
        f = Path(corpus) / name
        h.update(name.encode())
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()[:16]


def _plain(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _plain(v) for k, v in sorted(config.items()) if k not in IGNORED}
    return config


def stage_key(kind: str, corpus: str, config: dict[str, Any]) -> str:
    """The cache key of a stage's result: its kind, the corpus fingerprint and the config sections shaping it."""
    blob = json.dumps({"kind": kind, "corpus": corpus, "config": _plain(config)}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def lookup(cache_dir: str | Path, key: str) -> Path | None:
    """The cached folder of ``key`` when it is complete (its cache.json and every file it lists exist)."""
    folder = Path(cache_dir) / key
    record = folder / "cache.json"
    if not record.is_file():
        return None
    try:
        files = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return None
    return folder if all((folder / f).exists() for f in files) else None


def store(cache_dir: str | Path, key: str, source: str | Path, files: list[str], info: dict[str, Any]) -> Path:
    """Copy ``files`` (paths inside ``source``) into the cache entry ``key``, atomically; returns the entry."""
    source = Path(source)

    def fill(tmp: Path) -> None:
        for name in files:
            src, dst = source / name, tmp / name
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        atomic.write_json(tmp / "cache.json", {"key": key, "files": files, "source": str(source), **info})

    return atomic.write_dir(Path(cache_dir) / key, fill)
