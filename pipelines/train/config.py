"""The ``train:`` section: supervised pre-training / fine-tuning of the decoder (``clampdpo train sft``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from base.typed_config import check, option


@dataclass
class SFTConfig:
    """Pre-training / fine-tuning on the corpus with DeepSpeed ZeRO on Ray Train workers."""

    out_dir: str = option("runs/sft", help="Output folder: checkpoints/, model/ (the final weights), mlflow.db.")
    max_steps: int = option(
        2000,
        help="Optimizer steps; the cosine schedule ends here.",
    )
    max_minutes: Optional[float] = option(
        None,
        help="Opt-in cap: stop (and save) after this much training time even before max_steps, with a warning "
        "(a capped run's result depends on the machine's speed). None: run max_steps.",
    )
    batch_pieces: int = option(8, help="Pieces per worker per micro-batch (a piece is cut to the patch length).")
    grad_accum: int = option(1, help="Micro-batches per optimizer step.")
    lr: float = option(1e-3, help="Peak learning rate (NotaGen: 1e-4 pre-training, 1e-5 fine-tuning).")
    min_lr_ratio: float = option(0.1, help="The cosine decays to lr × this.")
    warmup_steps: int = option(100, help="Linear warm-up steps.")
    weight_decay: float = option(0.01, help="AdamW weight decay.")
    grad_clip: float = option(1.0, help="Gradient norm clip.")
    zero_stage: int = option(1, help="DeepSpeed ZeRO stage (0-3).")
    eval_every: int = option(200, help="Evaluate on the eval split every this many steps (and at the end).")
    eval_pieces: int = option(64, help="Eval pieces used (a fixed sample; 0 = all).")
    save_every: int = option(500, help="Save a resumable checkpoint every this many steps (and at the end).")
    log_every: int = option(10, help="Log training metrics every this many steps.")
    keep_checkpoints: int = option(2, help="Resumable checkpoints kept.")
    seed: int = option(0, help="Seed of initialisation, data order and streaming cuts.")
    resume: bool = option(True, help="Continue from the newest checkpoint in out_dir when there is one.")

    def __post_init__(self) -> None:
        check(self.max_steps >= 1, "max_steps", f"must be ≥ 1, got {self.max_steps}")
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be > 0")
        check(self.batch_pieces >= 1, "batch_pieces", f"must be ≥ 1, got {self.batch_pieces}")
        check(self.grad_accum >= 1, "grad_accum", f"must be ≥ 1, got {self.grad_accum}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1]")
        check(self.warmup_steps >= 0, "warmup_steps", "must be ≥ 0")
        check(self.zero_stage in (0, 1, 2, 3), "zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}")
        for name in ("eval_every", "save_every", "log_every", "keep_checkpoints"):
            check(getattr(self, name) >= 1, name, "must be ≥ 1")
        check(self.eval_pieces >= 0, "eval_pieces", "must be ≥ 0")
