"""``data verify``: round-trip a sample of a built corpus back to scores (same bar count)."""

from __future__ import annotations

import random
from pathlib import Path

from base.abc.score import RoundTrip, roundtrip


def verify_corpus(corpus_dir: str | Path, sample: int = 100, seed: int = 0) -> list[RoundTrip]:
    """Round-trip a seeded random sample of the corpus's interleaved pieces."""
    files = sorted((Path(corpus_dir) / "interleaved").glob("*.abc"))
    if not files:
        raise FileNotFoundError(f"{corpus_dir}: no interleaved/*.abc (build the corpus first)")
    chosen = random.Random(seed).sample(files, min(sample, len(files)))
    return [roundtrip(f.read_text(encoding="utf-8"), f.stem) for f in sorted(chosen)]
