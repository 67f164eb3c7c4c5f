"""Feature-extraction speed: pieces per second of the evaluator at batch 1 and batched.

    python bench/features.py [--evaluator runs/evaluator] [--corpus corpus] [--pieces 64] [--out-json FILE]

Pieces are the first N interleaved files of the corpus (sorted by name), so runs compare. Without
--evaluator a freshly initialised model of --size is used: the cost does not depend on the weights. The
cache is off, so every piece is encoded.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from evaluators.features import FeatureExtractor  # noqa: E402
from evaluators.m3_patchilizer import M3Patchilizer  # noqa: E402
from evaluators.model import ClampConfig, ClampModel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluator", help="evaluator folder (default: a fresh model of --size)")
    parser.add_argument("--size", default="tiny", help="size of the fresh model (tiny, small, clamp2)")
    parser.add_argument("--corpus", default="corpus", help="corpus folder with interleaved/ (default corpus)")
    parser.add_argument("--pieces", type=int, default=64, help="pieces per measurement (default 64)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per batch when batched (default 16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out-json")
    args = parser.parse_args()

    files = sorted((Path(args.corpus) / "interleaved").glob("*.abc"))[: args.pieces]
    if not files:
        parser.error(f"{args.corpus}/interleaved has no .abc files (run: clampdpo data build)")
    texts = [f.read_text(encoding="utf-8") for f in files]
    if args.evaluator:
        model = ClampModel.from_pretrained(Path(args.evaluator) / "model")
    else:
        torch.manual_seed(0)
        model = ClampModel(ClampConfig.from_size(args.size))
    patches = sum(len(M3Patchilizer().encode(t)) for t in texts)
    results = {
        "device": str(args.device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "pieces": len(texts),
        "patches": patches,
        "model_parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }
    for label, bs in (("batch1", 1), (f"batch{args.batch_size}", args.batch_size)):
        extractor = FeatureExtractor(model, args.device, batch_size=bs)
        extractor.extract(texts[:2])  # warm-up (allocations, kernels)
        extractor.cache.data.clear()
        start = time.perf_counter()
        extractor.extract(texts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results[f"{label}_pieces_per_s"] = round(len(texts) / seconds, 2)
        results[f"{label}_patches_per_s"] = round(patches / seconds, 1)
    results["speedup"] = round(results[f"batch{args.batch_size}_pieces_per_s"] / results["batch1_pieces_per_s"], 2)
    print(json.dumps(results, indent=2))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
