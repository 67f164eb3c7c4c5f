"""Corpus-build speed: pieces per second on a fixed subset of music21's corpus, from an empty cache.

    python bench/data_build.py [--workers N ...] [--out-json FILE]

The subset mixes every conversion path (MusicXML chorales, Humdrum motets via music21, multi-movement
quartets, folk ABC via abc2xml) so the figure reflects a real build, not the fastest format.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.data.build import build_corpus  # noqa: E402
from pipelines.data.config import DataConfig  # noqa: E402

SUBSET = {"bach": 60, "palestrina": 12, "haydn": 6, "monteverdi": 6, "oneills1850": 60, "ryansMammoth": 30}


def run(workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataConfig(collections=list(SUBSET), collection_limits=dict(SUBSET), out_dir=tmp, workers=workers, seed=0)
        start = time.perf_counter()
        result = build_corpus(cfg, progress=False)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        build_corpus(cfg, progress=False)
        cached = time.perf_counter() - start
    n = len(result.pieces) + len(result.rejects)
    return {
        "workers": workers,
        "inputs": n,
        "pieces": len(result.pieces),
        "seconds": round(seconds, 2),
        "pieces_per_second": round(n / seconds, 2),
        "rebuild_seconds": round(cached, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--out-json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = [run(w) for w in args.workers]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"{'workers':>7} {'inputs':>6} {'pieces':>6} {'seconds':>8} {'pieces/s':>9} {'rebuild s':>9}")
    for r in rows:
        print(
            f"{r['workers']:>7} {r['inputs']:>6} {r['pieces']:>6} {r['seconds']:>8} {r['pieces_per_second']:>9} "
            f"{r['rebuild_seconds']:>9}"
        )
    if args.out_json:
        Path(args.out_json).write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
