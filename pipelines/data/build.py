"""``clampdpo data build``: turn scores into the interleaved-ABC corpus every later stage reads.

Layout of the output folder::

    interleaved/<id>.abc     CLaMP-compatible interleaved ABC (what the evaluator reads)
    train/<id>.abc           NotaGen training form with the three prompt lines, original key
    train/<id>_<KEY>.abc     the same in each of NotaGen's 15 keys (train split, --augment-keys)
    manifest.jsonl           one row per piece: id, source, sha256, prompt fields, bars, voices, chars, split
    rejected.jsonl           one row per rejected file or piece: path, stage, reason
    train.jsonl, eval.jsonl  the NotaGen-form files of each split, with their prompts
    summary.json             counts per prompt, composer and reject reason
    .cache/                  conversions keyed by content hash, so a rebuild converts only new input

Conversion runs in worker processes; everything that depends on settings that are cheap to change
(filters, metadata tables, overrides, the split) runs afterwards in the main process, so changing
them never forces a reconversion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from base import atomic
from base.abc.interleave import (
    AUGMENTATION_KEYS,
    InterleaveError,
    body_lines,
    interleave,
    notagen_form,
    prompt_lines,
    transpose,
    unclosed_bars,
    voice_ids,
)
from base.abc.score import bar_durations_aligned
from base.bounded_pool import Limits, Stopped, run_bounded
from base.errors import describe
from pipelines.data.clean import CleaningError, clean_standard_abc
from pipelines.data.config import DataConfig
from pipelines.data.convert import ConversionError, to_standard_abc
from pipelines.data.metadata import MetadataOverrides, header_facts, infer_prompt
from pipelines.data.sources import Reject, SourceItem, enumerate_sources
from pipelines.data.split import assign_splits

log = logging.getLogger(__name__)

# Bump when conversion output changes in a way the fingerprint below cannot see.
PIPELINE_VERSION = "1"


def pipeline_fingerprint() -> str:
    """Identifies the conversion code and tools, so the cache never serves output of an older pipeline."""
    from importlib import metadata

    from base.abc import convert as abc_convert
    from base.abc import interleave
    from pipelines.data import clean, convert, sources
    from pipelines.data import metadata as meta_module

    h = hashlib.sha256(PIPELINE_VERSION.encode())
    for module in (sources, convert, abc_convert, clean, interleave, meta_module):
        h.update(Path(str(module.__file__)).read_bytes())
    for dist in ("abctoolkit", "music21"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


_LIMITS_HELP = "the limits are data.convert_timeout_s and data.convert_memory_mb"


class BuildError(RuntimeError):
    """Nothing at all could be produced; the message says why."""


@dataclass
class BuildResult:
    out_dir: Path
    pieces: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    converted: int  # conversions run now (not taken from the cache)
    augmented: int  # transpositions run now
    summary: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- worker side (pure, picklable)


def convert_item(item: SourceItem, unit_length: int) -> dict[str, Any]:
    """Convert one source item; never raises: failures come back as {'ok': False, 'stage', 'reason'}."""
    try:
        standard = to_standard_abc(item, unit_length)
    except ConversionError as err:
        return {"ok": False, "stage": "convert", "reason": str(err)}
    except Exception as err:  # a converter bug on odd input must not stop the build
        return {"ok": False, "stage": "convert", "reason": f"{describe(err)}"}
    facts = header_facts(standard)
    try:
        cleaned = clean_standard_abc(standard)
    except CleaningError as err:
        return {"ok": False, "stage": "clean", "reason": str(err)}
    except Exception as err:
        return {"ok": False, "stage": "clean", "reason": f"{describe(err)}"}
    try:
        inter = interleave(cleaned)
        reduced = notagen_form(cleaned)
    except InterleaveError as err:
        return {"ok": False, "stage": "interleave", "reason": str(err)}
    except Exception as err:
        return {"ok": False, "stage": "interleave", "reason": f"{describe(err)}"}
    broken = unclosed_bars(inter)
    if broken:
        return {
            "ok": False,
            "stage": "interleave",
            "reason": f"bar without closing barline after interleaving (bar {broken[0]})",
        }
    key = next((ln[2:].strip() for ln in cleaned if ln.startswith("K:")), "none")
    return {
        "ok": True,
        "standard": "".join(cleaned),
        "interleaved": "".join(inter),
        "notagen": "".join(reduced),
        "facts": facts,
        "key": key,
        "voices": len(voice_ids(cleaned)),
        "bars": len(body_lines(inter)),
        "aligned": bar_durations_aligned(cleaned),
    }


def augment_item(standard: str) -> dict[str, Any]:
    """NotaGen-form text of a cleaned standard ABC piece in each augmentation key (failed keys omitted)."""
    lines = standard.splitlines(keepends=True)
    out, failed = {}, {}
    for key in AUGMENTATION_KEYS:
        try:
            out[key] = "".join(notagen_form(transpose(lines, key)))
        except (InterleaveError, Exception) as err:  # abctoolkit's transposer fails on some exotic keys
            failed[key] = str(err)
    return {"keys": out, "failed": failed}


def _convert_star(args: tuple) -> dict[str, Any]:
    item, unit_length = args
    return convert_item(item, unit_length)


def _augment_star(args: tuple) -> dict[str, Any]:
    _, standard = args
    return augment_item(standard)


# ---------------------------------------------------------------- cache


class ConversionCache:
    """Results keyed by content hash (and pipeline version), one JSON file each, written atomically."""

    def __init__(self, root: Path, kind: str, salt: str):
        self.root = root / ".cache" / kind
        self.salt = salt

    def _path(self, sha: str) -> Path:
        key = hashlib.sha256(f"{self.salt}:{sha}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.json"

    def get(self, sha: str) -> dict[str, Any] | None:
        path = self._path(sha)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is simply redone

    def put(self, sha: str, result: dict[str, Any]) -> None:
        atomic.write_text(self._path(sha), json.dumps(result))


def _run_parallel(
    fn: Callable, jobs: list, workers: int, limits: Limits, desc: str, progress: bool
) -> Iterator[tuple[int, Any]]:
    """(position, result or Stopped) of each job, every job under ``limits`` in a worker process."""
    bar = tqdm(total=len(jobs), desc=desc, unit="piece", disable=not progress or not jobs, dynamic_ncols=True)
    try:
        for index, result in run_bounded(fn, jobs, workers, limits):
            yield index, result
            bar.update(1)
    finally:
        bar.close()


# ---------------------------------------------------------------- main side


def _reason_group(reason: str) -> str:
    """A reject reason without its details, for counting (``voices have unequal bar counts``)."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    atomic.write_text(path, text)


def build_corpus(cfg: DataConfig, progress: bool = True) -> BuildResult:
    """Build (or update) the corpus described by ``cfg``; see the module docstring for the layout. The folder
    is held for this process while it builds (``FolderLock``): a second build of it is refused, naming the first."""
    from base.folder_lock import FolderLock

    with FolderLock(Path(cfg.out_dir), "data build"):
        return _build(cfg, progress)


def _build(cfg: DataConfig, progress: bool) -> BuildResult:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or os.cpu_count() or 1
    overrides = MetadataOverrides.load(cfg.metadata_overrides) if cfg.metadata_overrides else MetadataOverrides.empty()

    items, read_rejects = enumerate_sources(cfg)
    log.info("found %d pieces to consider (%d files rejected while reading)", len(items), len(read_rejects))

    fingerprint = pipeline_fingerprint()
    cache = ConversionCache(out, "convert", f"{fingerprint}:d{cfg.unit_length}")
    results: dict[str, dict[str, Any]] = {}
    todo: list[SourceItem] = []
    queued: set[str] = set()
    for it in items:
        cached = cache.get(it.sha256)
        if cached is not None:
            results[it.sha256] = cached
        elif it.sha256 not in queued:
            queued.add(it.sha256)
            todo.append(it)
    log.info("%d pieces cached, %d to convert with %d workers", len(results), len(todo), workers)
    limits = Limits(seconds=cfg.convert_timeout_s, memory_mb=cfg.convert_memory_mb)
    jobs = [(it, cfg.unit_length) for it in todo]
    for index, res in _run_parallel(_convert_star, jobs, workers, limits, "convert", progress):
        sha = todo[index].sha256
        if isinstance(res, Stopped):  # not cached: a rebuild with other limits tries it again
            results[sha] = {"ok": False, "stage": "convert", "reason": f"{res.reason} to convert ({_LIMITS_HELP})"}
            continue
        cache.put(sha, res)
        results[sha] = res

    rejects: list[Reject] = list(read_rejects)
    pieces: list[dict[str, Any]] = []
    seen_music: dict[str, str] = {}
    for it in sorted(items, key=lambda x: x.piece_id):
        res = results[it.sha256]
        if not res["ok"]:
            rejects.append(Reject(it.path, res["stage"], res["reason"], it.piece_id))
            continue
        music_hash = hashlib.sha256(res["interleaved"].encode()).hexdigest()
        if music_hash in seen_music:
            rejects.append(
                Reject(it.path, "filter", f"duplicate (same music as {seen_music[music_hash]})", it.piece_id)
            )
            continue
        chars = len(res["interleaved"])
        problem = None
        if res["bars"] < cfg.min_bars:
            problem = f"too few bars ({res['bars']} < min_bars {cfg.min_bars})"
        elif res["voices"] > cfg.max_voices:
            problem = f"too many voices ({res['voices']} > max_voices {cfg.max_voices})"
        elif chars > cfg.max_chars:
            problem = f"over the length limit ({chars} chars > max_chars {cfg.max_chars})"
        elif cfg.require_aligned_durations and not res["aligned"]:
            problem = "bar durations differ between voices (abctoolkit alignment check)"
        if problem:
            rejects.append(Reject(it.path, "filter", problem, it.piece_id))
            continue
        seen_music[music_hash] = it.piece_id
        facts = res["facts"]
        prompt = infer_prompt(facts["composer_field"], facts["part_names"], res["voices"], it.collection)
        prompt = overrides.apply(prompt, it.piece_id, it.path)
        pieces.append(
            {
                "id": it.piece_id,
                "source": it.source,
                "path": it.path,
                "collection": it.collection,
                "tune": it.tune,
                "sha256": it.sha256,
                "work": it.work_id,
                "title": facts["title"],
                "period": prompt.period,
                "composer": prompt.composer,
                "instrumentation": prompt.instrumentation,
                "prompt": prompt.key(),
                "key": res["key"],
                "bars": res["bars"],
                "voices": res["voices"],
                "chars": chars,
                "aligned": res["aligned"],
            }
        )

    if not pieces:
        reasons = Counter(_reason_group(r.reason) for r in rejects).most_common(3)
        why = "; ".join(f"{n}× {r}" for r, n in reasons) or "no input files were found"
        atomic.write_jsonl(out / "rejected.jsonl", [r.to_row() for r in rejects])
        raise BuildError(
            f"no pieces produced from {len(items)} candidates ({len(rejects)} rejected: {why}); "
            f"see {out / 'rejected.jsonl'}"
        )

    splits = assign_splits([p["work"] for p in pieces], cfg.eval_fraction, cfg.seed)
    for p, s in zip(pieces, splits):
        p["split"] = s

    augmented_now = 0
    augmented: dict[str, dict[str, str]] = {}
    if cfg.augment_keys:
        aug_cache = ConversionCache(out, "keys", f"{fingerprint}:d{cfg.unit_length}")
        aug_jobs = []
        for p in pieces:
            if p["split"] != "train":
                continue
            hit = aug_cache.get(p["sha256"])
            if hit is not None:
                augmented[p["sha256"]] = hit["keys"]
            else:
                aug_jobs.append((p["sha256"], results[p["sha256"]]["standard"]))
        for index, res in _run_parallel(_augment_star, aug_jobs, workers, limits, "transpose", progress):
            sha = aug_jobs[index][0]
            if isinstance(res, Stopped):  # the piece stays, in its own key only
                log.warning("piece %s: transposing %s; it is kept in its own key only", sha[:12], res.reason)
                augmented[sha] = {}
                continue
            aug_cache.put(sha, res)
            augmented[sha] = res["keys"]
            augmented_now += 1

    _write_outputs(out, pieces, results, augmented)
    reject_rows = [r.to_row() for r in rejects]
    atomic.write_jsonl(out / "rejected.jsonl", reject_rows)
    summary = summarize(pieces, reject_rows, converted=len(todo), augmented=augmented_now)
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(out / "build_config.json", {"pipeline": fingerprint, **{k: v for k, v in vars(cfg).items()}})
    return BuildResult(out, pieces, reject_rows, len(todo), augmented_now, summary)


def _write_outputs(out: Path, pieces: list[dict], results: dict, augmented: dict[str, dict[str, str]]) -> None:
    inter_dir, train_dir = out / "interleaved", out / "train"
    keep_inter, keep_train = set(), set()
    index: dict[str, list[dict]] = {"train": [], "eval": []}
    for p in pieces:
        res = results[p["sha256"]]
        prompt = "".join(prompt_lines(p["period"], p["composer"], p["instrumentation"]))
        inter_name, train_name = f"{p['id']}.abc", f"{p['id']}.abc"
        _write_if_changed(inter_dir / inter_name, res["interleaved"])
        _write_if_changed(train_dir / train_name, prompt + res["notagen"])
        keep_inter.add(inter_name)
        keep_train.add(train_name)
        files = [f"train/{train_name}"]
        for key, text in sorted(augmented.get(p["sha256"], {}).items()):
            name = f"{p['id']}_{key.replace('#', 's')}.abc"
            _write_if_changed(train_dir / name, prompt + text)
            keep_train.add(name)
            files.append(f"train/{name}")
        p["files"] = {"interleaved": f"interleaved/{inter_name}", "train": files}
        for f in files:
            index[p["split"]].append(
                {
                    "id": p["id"],
                    "path": f,
                    "prompt": p["prompt"],
                    "period": p["period"],
                    "composer": p["composer"],
                    "instrumentation": p["instrumentation"],
                }
            )
    for folder, keep in ((inter_dir, keep_inter), (train_dir, keep_train)):
        for stale in folder.glob("*.abc"):  # pieces no longer produced must not linger in the corpus
            if stale.name not in keep:
                stale.unlink()
    atomic.write_jsonl(out / "manifest.jsonl", pieces)
    atomic.write_jsonl(out / "train.jsonl", index["train"])
    atomic.write_jsonl(out / "eval.jsonl", index["eval"])


def summarize(pieces: list[dict], rejects: list[dict], converted: int = 0, augmented: int = 0) -> dict[str, Any]:
    return {
        "pieces": len(pieces),
        "train": sum(p["split"] == "train" for p in pieces),
        "eval": sum(p["split"] == "eval" for p in pieces),
        "works": len({p["work"] for p in pieces}),
        "composers": dict(Counter(p["composer"] for p in pieces).most_common()),
        "prompts": dict(Counter(p["prompt"] for p in pieces).most_common()),
        "rejected": len(rejects),
        "rejects_by_reason": dict(
            Counter(f"{r['stage']}: {_reason_group(r['reason'])}" for r in rejects).most_common()
        ),
        "converted_now": converted,
        "transposed_now": augmented,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"pieces: {summary['pieces']} (train {summary['train']}, eval {summary['eval']}) from {summary['works']} works",
        f"composer prompts: {len(summary['composers'])}   prompts (period-composer-instrumentation): "
        f"{len(summary['prompts'])}",
        f"converted now: {summary['converted_now']}   transposed now: {summary['transposed_now']}",
        "",
        "pieces per prompt:",
    ]
    width = max((len(k) for k in summary["prompts"]), default=10)
    lines += [f"  {k:<{width}}  {n:>6}" for k, n in summary["prompts"].items()]
    lines += ["", f"rejected: {summary['rejected']}"]
    width = max((len(k) for k in summary["rejects_by_reason"]), default=10)
    lines += [f"  {k:<{width}}  {n:>6}" for k, n in summary["rejects_by_reason"].items()]
    return "\n".join(lines)


def ensure_corpus(cfg: DataConfig, progress: bool = True) -> Path:
    """The corpus folder of ``cfg``, built first when it has no split index yet (later stages call this)."""
    out = Path(cfg.out_dir)
    if not (out / "train.jsonl").is_file():
        log.info("no corpus in %s yet: building it first (clampdpo data build)", out)
        result = build_corpus(cfg, progress=progress)
        log.info("%s", format_summary(result.summary).splitlines()[0])
    return out
