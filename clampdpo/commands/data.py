"""``clampdpo data``: build, verify and inspect the corpus."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.data.config import DataConfig

log = logging.getLogger(__name__)


def _data_config(args: argparse.Namespace) -> DataConfig:
    from clampdpo.args import load_project

    flags = {
        "source": "sources",
        "out": "out_dir",
        "workers": "workers",
        "seed": "seed",
        "eval_fraction": "eval_fraction",
        "limit": "limit",
        "metadata_overrides": "metadata_overrides",
    }
    extra: dict[str, object] = {f"data.{name}": getattr(args, flag, None) for flag, name in flags.items()}
    if args.augment_keys:
        extra["data.augment_keys"] = True
    return load_project(args, extra=extra).data


def _build(args: argparse.Namespace) -> int:
    from pipelines.data.build import BuildError, build_corpus, format_summary

    cfg = _data_config(args)
    try:
        result = build_corpus(cfg, progress=not args.no_progress)
    except BuildError as err:
        log.error("%s", err)
        return 1
    sys.stdout.write(format_summary(result.summary) + "\n")
    sys.stdout.write(f"corpus written to {result.out_dir}\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipelines.data.verify import verify_corpus

    results = verify_corpus(args.corpus, sample=args.sample, seed=args.seed)
    passed = sum(r.ok for r in results)
    for r in results:
        if not r.ok:
            sys.stdout.write(f"FAIL {r.piece}: {r.reason}\n")
    rate = passed / len(results)
    sys.stdout.write(
        f"round trip (unrotate -> abc2xml -> music21, same bar count): {passed}/{len(results)} = {rate:.1%}\n"
    )
    return 0 if rate >= args.min_rate else 1


def _stats(args: argparse.Namespace) -> int:
    from pipelines.data.build import format_summary

    path = Path(args.corpus) / "summary.json"
    if not path.is_file():
        log.error("%s: no summary.json (build the corpus first)", args.corpus)
        return 1
    sys.stdout.write(format_summary(json.loads(path.read_text(encoding="utf-8"))) + "\n")
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    from clampdpo.args import add_config_args

    p = groups.add_parser(
        "data",
        help="build and check the interleaved-ABC corpus",
        description="Build the corpus of interleaved ABC pieces with period-composer-"
        "instrumentation prompts from music21's bundled scores or your own files.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)

    b = sub.add_parser(
        "build",
        help="convert scores into the corpus (interleaved/, train/, manifest.jsonl)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert scores as NotaGen does (score -> MusicXML -> xml2abc -d 8 -x -> cleaning -> "
        "interleaved ABC -> NotaGen form with %period/%composer/%instrumentation lines).\n"
        "Re-running converts only files whose content changed; bad files are listed in rejected.jsonl.",
    )
    add_config_args(b)
    b.add_argument(
        "--source",
        action="append",
        metavar="music21|DIR",
        help="a source: 'music21' or a folder of .xml/.mxl/.musicxml/.krn/.abc (repeatable; replaces data.sources)",
    )
    b.add_argument("--out", metavar="DIR", help="output folder (data.out_dir)")
    b.add_argument("--augment-keys", action="store_true", help="write training pieces in NotaGen's 15 keys")
    b.add_argument("--workers", type=int, help="conversion processes (0 = one per core)")
    b.add_argument("--seed", type=int, help="seed of the split and the collection samples")
    b.add_argument("--eval-fraction", type=float, help="share of works held out for evaluation")
    b.add_argument("--limit", type=int, help="at most this many pieces (a seeded sample; 0 = all)")
    b.add_argument("--metadata-overrides", metavar="FILE", help="CSV/JSON of prompt-field corrections")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    v = sub.add_parser(
        "verify",
        help="round-trip a sample of the corpus back to scores",
        description="Convert a random sample of interleaved pieces back (unrotate -> abc2xml) "
        "and check music21 parses them with the same number of bars.",
    )
    v.add_argument("corpus", help="corpus folder")
    v.add_argument("--sample", type=int, default=100, help="pieces to check (default 100)")
    v.add_argument("--seed", type=int, default=0, help="sample seed")
    v.add_argument("--min-rate", type=float, default=0.95, help="exit non-zero below this pass rate")
    v.set_defaults(func=_verify)

    s = sub.add_parser(
        "stats",
        help="print the summary of a built corpus",
        description="Print pieces per prompt and rejects per reason of a built corpus.",
    )
    s.add_argument("corpus", help="corpus folder")
    s.set_defaults(func=_stats)
