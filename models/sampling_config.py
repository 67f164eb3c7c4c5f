"""The ``sampling:`` section of a project config (kept free of torch so configs load fast)."""

from __future__ import annotations

from dataclasses import dataclass

from base.typed_config import check, option


@dataclass
class SamplingConfig:
    """How pieces are sampled (NotaGen's inference defaults)."""

    top_k: int = option(9, help="Keep the k most likely characters (0 = all; 1 = greedy).")
    top_p: float = option(0.9, help="Then keep the smallest set whose probability reaches top_p (1.0 = all).")
    temperature: float = option(1.2, help="Then sharpen (<1) or flatten (>1) the kept probabilities.")
    max_patches: int = option(
        1024, help="Patch budget per piece (prompt excluded); a piece that hits it is returned unfinished."
    )
    batch_size: int = option(16, help="Pieces generated together.")
    use_cache: bool = option(True, help="KV caches at both levels (False recomputes everything; for checks).")

    def __post_init__(self) -> None:
        check(self.top_k >= 0, "top_k", "must be ≥ 0")
        check(0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]")
        check(self.temperature > 0, "temperature", "must be > 0")
        check(self.max_patches > 0, "max_patches", "must be > 0")
        check(self.batch_size > 0, "batch_size", "must be > 0")
