"""The ``evaluator:`` section: the CLaMP-style evaluator's size, training and feature extraction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from base.typed_config import check, option

SUBSETS = ("all", "even", "odd")
PLAGIARISM_THRESHOLD = 0.95  # NotaGen: Levenshtein similarity or feature cosine to a real piece above this


@dataclass(frozen=True)
class EvaluatorSize:
    hidden_size: int
    num_layers: int
    decoder_layers: int
    text_layers: int
    text_hidden_size: int
    projection_size: int


SIZES = {
    "tiny": EvaluatorSize(
        hidden_size=128, num_layers=2, decoder_layers=1, text_layers=2, text_hidden_size=128, projection_size=128
    ),
    "small": EvaluatorSize(
        hidden_size=256, num_layers=4, decoder_layers=2, text_layers=3, text_hidden_size=256, projection_size=256
    ),
    # CLaMP 2's music side exactly (M3: 12 layers, hidden 768, 3-layer char decoder; projection 768)
    "clamp2": EvaluatorSize(
        hidden_size=768, num_layers=12, decoder_layers=3, text_layers=6, text_hidden_size=768, projection_size=768
    ),
}


@dataclass
class EvaluatorConfig:
    """Train (``clampdpo evaluator train``) or load the music evaluator that scores samples."""

    size: str = option("tiny", help="tiny | small | clamp2 (CLaMP 2's music side: 12 layers, hidden 768).")
    out_dir: str = option("runs/evaluator", help="Output folder: model/, reference.npz, report.json, mlflow.db.")
    init_from: Optional[str] = option(
        None, help="Start from this evaluator folder (e.g. imported CLaMP 2 weights) instead of random weights."
    )
    preprocess: str = option(
        "notagen",
        help="How a text is prepared before M3 patching (evaluators/m3_patchilizer.py FAMILIES): notagen "
        "(prompt comment lines dropped), notagen-meter (and each bar's length relative to the meter spelled "
        "out), clamp2, clamp3. Stored with the model; an imported model keeps its own.",
    )
    subset: str = option(
        "all",
        help="Train pieces used: all, or the even / odd half by id hash. An evaluator "
        "trained on the other half with another seed is an independent judge.",
    )
    seed: int = option(0, help="Seed of initialisation, masking and batch order.")
    dropout: float = option(0.1, help="Dropout in every encoder.")
    train_patches: int = option(
        512, help="Patches per piece in training (a longer piece is cropped head / tail / middle, as CLaMP 2; ≤ 512)."
    )
    mask_ratio: float = option(0.45, help="Share of patches rebuilt in masked-patch pre-training (CLaMP 2: 0.45).")
    pretrain_steps: int = option(300, help="Masked-patch pre-training steps (0 skips it).")
    contrastive_steps: int = option(300, help="Contrastive text-music steps (0 skips it).")
    max_minutes: Optional[float] = option(
        None,
        help="Opt-in cap on both phases (split by their step counts); a cut warns, and the evaluator then "
        "depends on the machine's speed. None: run the step counts.",
    )
    batch_size: int = option(16, help="Pieces per step (the contrastive batch is also the negatives).")
    lr: float = option(1e-3, help="Peak AdamW learning rate of masked-patch pre-training (CLaMP 2's M3: 1e-4).")
    contrastive_lr: float = option(
        3e-4,
        help="Peak AdamW learning rate of contrastive training (CLaMP 2: 5e-5); "
        "too high collapses every feature onto one direction.",
    )
    warmup_steps: int = option(30, help="Linear warm-up steps of each phase; constant afterwards (as CLaMP 2).")
    weight_decay: float = option(0.01, help="AdamW weight decay.")
    text_dropout: bool = option(
        True, help="Half the time, train on a random subset of the metadata fields (CLaMP 2's text dropout)."
    )
    hard_negatives: list[str] = option(
        default_factory=lambda: ["jitter_notes", "permute_bars", "swap_voices"],
        help="Corruptions whose copies of the batch's pieces are added to each "
        "contrastive batch as negatives no text matches, so the feature "
        "depends on the notes and not only on the header (not in CLaMP 2): "
        "jitter_notes, permute_bars, swap_voices; [] turns it off.",
    )
    centroid_margin: float = option(
        0.0,
        help="Train the score itself: a piece must score (cosine to its prompt's centroid, centred when "
        "center_features is on) at least this much above its hard negative (evaluators/centroid_margin.py); "
        "0 turns it off. Needs hard_negatives.",
    )
    centroid_margin_weight: float = option(1.0, help="Weight of the centroid margin loss beside the contrastive loss.")
    eval_every: int = option(100, help="Evaluate held-out losses every this many steps of each phase.")
    log_every: int = option(10, help="Log training metrics every this many steps.")
    feature_batch_size: int = option(16, help="Windows per batch in feature extraction.")
    min_prompt_pieces: int = option(
        5,
        help="Prompts and composers with fewer train pieces are left out of the held-out composer accuracy and margin.",
    )
    plagiarism_cosine: Optional[float] = option(
        PLAGIARISM_THRESHOLD,
        help="Feature cosine to one ground-truth piece above which a "
        "sample counts as plagiarism (NotaGen: 0.95 with CLaMP 2); "
        "None calibrates it: the 99th percentile of held-out real "
        "pieces' cosine to their nearest train piece.",
    )
    center_features: bool = option(
        False,
        help="Score on features minus the mean ground-truth feature. A small "
        "evaluator trained here crowds every feature into a narrow cone "
        "(cosines to any centroid ≈ 0.9); centring spreads them so the "
        "score separates pieces. False is NotaGen's score on CLaMP 2.",
    )
    device: Optional[str] = option(None, help="cpu, cuda, cuda:1 ...; None = a GPU when there is one.")

    def __post_init__(self) -> None:
        check(self.size in SIZES, "size", f"must be one of {', '.join(SIZES)}, got {self.size!r}")
        from evaluators.m3_patchilizer import FAMILIES

        check(
            self.preprocess in FAMILIES, "preprocess", f"must be one of {', '.join(FAMILIES)}, got {self.preprocess!r}"
        )
        check(self.subset in SUBSETS, "subset", f"must be one of {', '.join(SUBSETS)}, got {self.subset!r}")
        check(0 < self.mask_ratio < 1, "mask_ratio", f"must be in (0, 1), got {self.mask_ratio}")
        check(8 <= self.train_patches <= 512, "train_patches", f"must be in [8, 512], got {self.train_patches}")
        check(self.pretrain_steps >= 0 and self.contrastive_steps >= 0, "pretrain_steps", "step counts must be ≥ 0")
        check(self.batch_size >= 2, "batch_size", f"contrastive training needs ≥ 2 pieces, got {self.batch_size}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        from evaluators.corrupt import TRAINING_CORRUPTIONS

        unknown = [k for k in self.hard_negatives if k not in TRAINING_CORRUPTIONS]
        check(
            not unknown,
            "hard_negatives",
            f"unknown corruption(s) {unknown}; choose from {', '.join(TRAINING_CORRUPTIONS)}",
        )
        check(0 <= self.centroid_margin <= 2, "centroid_margin", f"must be in [0, 2], got {self.centroid_margin}")
        check(
            self.centroid_margin == 0 or bool(self.hard_negatives),
            "centroid_margin",
            "needs hard_negatives (the corrupted copies it separates from real pieces)",
        )
        check(self.contrastive_lr > 0, "contrastive_lr", f"must be > 0, got {self.contrastive_lr}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be > 0")
