"""``clampdpo model``: inspect how the NotaGen decoder sees a piece."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def _patches(args: argparse.Namespace) -> int:
    import random

    from models.patchilizer import Patchilizer

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        log.error("%s: cannot read as UTF-8 text (%s)", path, err)
        return 1
    # Patchilize with no length limit so the count (and the fits/cut verdict) is the whole piece's,
    # not whatever a random streaming cut happened to keep.
    pz = Patchilizer(patch_size=16, patch_length=sys.maxsize, stream=not args.no_stream)
    full = pz.train_patches(text, rng=random.Random(0), cut=False)
    try:
        ids = pz.to_ids(full)
    except ValueError as err:
        log.error("%s: %s", path, err)
        return 1
    for i, (p, row) in enumerate(zip(full, ids)):
        if args.show:
            shown = "".join(c if ord(c) > 2 else {0: "·", 1: "⟨bos⟩", 2: "⟨eos⟩"}[ord(c)] for c in p)
            sys.stdout.write(f"{i:>5}  {shown.replace(chr(10), '⏎')!s:<40} {row}\n")
    over = len(full) > args.patch_length
    sys.stdout.write(f"{path.name}: {len(full)} patches of 16 ({len(text)} chars); patch_length {args.patch_length}: "
                     f"{'longer: training sees a streamed cut' if over else 'fits'}\n")
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser("model", help="the NotaGen decoder: inspect patches",
                          description="Commands around NotaGen's two-level decoder.")
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    pt = sub.add_parser("patches", help="show the 16-character patches and ids of an ABC file",
                        description="Patchilize a NotaGen-form ABC file as training does (bos/eos patches, "
                        "[r:i/n] line prefixes in stream mode) and report whether it fits the patch length.")
    pt.add_argument("file", help="an ABC file, e.g. corpus/train/<id>.abc")
    pt.add_argument("--patch-length", type=int, default=1024, help="patches the model sees (default 1024)")
    pt.add_argument("--no-stream", action="store_true", help="no [r:i/n] prefixes, plain truncation")
    pt.add_argument("--show", action="store_true", help="print every patch with its ids")
    pt.set_defaults(func=_patches)
