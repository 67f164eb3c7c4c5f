"""Sampling speed: characters per second of our batched, KV-cached sampler vs NotaGen's method.

    python bench/sample.py [--model runs/sft/model] [--pieces 16] [--max-patches 64] [--out-json FILE]

Both samplers use the same weights, the same prompt and the same patch budget per piece; the
reference (bench/naive_sampler.py) generates one piece at a time with full recomputation, as NotaGen's
inference does. Ours is measured at batch 1 and batch 16. Without --model a freshly initialised model of
the `tiny` size is used (the cost of sampling does not depend on what the weights say, only on how much
is generated, so pieces are held to the same patch budget).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from naive_sampler import naive_sample  # noqa: E402

from models.config import ModelConfig, load_model  # noqa: E402
from models.sampling import Sampler, SamplingConfig  # noqa: E402

PROMPT = ["%Baroque\n", "%Bach, Johann Sebastian\n", "%Choral\n"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="saved model folder (default: a fresh tiny model)")
    parser.add_argument("--pieces", type=int, default=16, help="pieces per measurement (default 16)")
    parser.add_argument("--max-patches", type=int, default=64, help="patch budget per piece (default 64)")
    parser.add_argument("--naive-pieces", type=int, default=4, help="pieces for the slow reference (default 4)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out-json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_model(args.model) if args.model else ModelConfig(size="tiny").build()
    model = model.to(args.device).eval()

    # the budget binds every piece: the eos patch is never drawn, so each piece is exactly max_patches long
    def run_ours(batch: int) -> float:
        cfg = SamplingConfig(max_patches=args.max_patches, batch_size=batch)
        sampler = Sampler(model, cfg, device=args.device)
        sampler.generate([PROMPT], [999])  # warm-up
        start = time.perf_counter()
        samples = sampler.generate([PROMPT] * args.pieces, list(range(args.pieces)))
        return sum(s.chars for s in samples) / (time.perf_counter() - start)

    start = time.perf_counter()
    chars = sum(
        len(naive_sample(model, PROMPT, seed, args.max_patches)) - len("".join(PROMPT))
        for seed in range(args.naive_pieces)
    )
    naive = chars / (time.perf_counter() - start)
    results = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor(),
        "max_patches": args.max_patches,
        "pieces": args.pieces,
        "reference_chars_per_s": round(naive, 1),
    }
    print(f"{'sampler':<28}{'chars/s':>12}{'× reference':>14}")
    print(f"{'reference (NotaGen, bs 1)':<28}{naive:>12.1f}{1.0:>14.1f}")
    for batch in (1, 16):
        ours = run_ours(batch)
        results[f"ours_bs{batch}_chars_per_s"] = round(ours, 1)
        results[f"speedup_bs{batch}"] = round(ours / naive, 2)
        print(f"{f'ours (cached, bs {batch})':<28}{ours:>12.1f}{ours / naive:>14.1f}")
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
