"""The ``dpo:`` section: how each campaign round builds pairs and trains on them (TRL DPOTrainer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from base.typed_config import check, option
from evaluators.scores import REWARDS

# TRL 1.16's DPOTrainer loss types, plus NotaGen's DPOP (ours).
TRL_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
LOSS_TYPES = ("dpop",) + TRL_LOSS_TYPES
STYLES = ("meter", "rhythm", "length")  # what the chosen may be made to share with the real pieces (campaign/pairs.py)
GUARDS = ("off", "warn", "skip")


@dataclass
class DPORoundConfig:
    """Pairs and DPO training of one round (NotaGen's CLaMP-DPO settings by default)."""

    RENAMED: ClassVar[dict[str, str]] = {"require_parse": "require_music21_reads"}  # old name → field

    reward: str = option(
        "centroid",
        help="What ranks a round's candidates: 'centroid' (NotaGen's CLaMP score, the cosine to the mean feature "
        "of the prompt's real training pieces) or 'knn' (the mean cosine to the reward_k nearest of them: close "
        "to some real piece of the prompt, whatever its style, instead of to a mean that sits between its jigs "
        "and its reels). The round table's CLaMP column stays NotaGen's centroid score either way.",
    )
    reward_k: int = option(5, help="With reward 'knn': how many nearest real pieces of the prompt are averaged.")
    reward_contrast: float = option(
        0.0,
        help="Subtract this share of the best score any other prompt of the corpus gives the candidate (the same "
        "kind of score against that prompt's real pieces): rewards what tells the prompt's music from the other "
        "prompts', not what all prompts share. 0 = NotaGen's score alone; 1 = the margin over the nearest rival.",
    )
    select_portion: float = option(
        0.1,
        help="Per prompt, the best this share of candidates (after exclusions) "
        "are chosen and the worst this share rejected (NotaGen: 0.1).",
    )
    min_meter_fill: float = option(
        0.0,
        help="A candidate may be chosen only when at least this share of its bars fill the meter (pickups "
        "allowed; evaluators/meter.py): a guard used as an exclusion, as NotaGen excludes misaligned bars. "
        "0 turns it off.",
    )
    cap_at_real: bool = option(
        False,
        help="A candidate scoring above its prompt's real held-out pieces (their mean, or cap_quantile of their "
        "scores) may not be chosen: the policy is taught to climb toward real music, not past it to something "
        "more typical than any real piece (the over-optimisation a centroid reward invites).",
    )
    cap_quantile: Optional[float] = option(
        None,
        help="With cap_at_real: the ceiling is this quantile of the real pieces' scores instead of their mean. "
        "Half of the real pieces score above their mean, so a mean ceiling also bars the samples most like them "
        "(on the default corpus it barred a third of the American 2/4 tunes, the prompt's commonest metre, and "
        "the policy left that metre); 0.9 bars only what scores above nearly every real piece.",
    )
    require_music21_reads: bool = option(
        False,
        help="A candidate may be chosen only when music21's own ABC reader reads it (the parse-rate guard used "
        "as an exclusion; the candidates are then checked while they are scored, ~0.1 s each on a CPU core).",
    )
    chosen_like_real: list[str] = option(
        default_factory=list,
        help="Make each prompt's chosen keep the shares of its real held-out pieces' styles in these respects: "
        "'meter' (the first M: line), 'rhythm' (the most common note length). Each style gets its share of the "
        "chosen places, filled by its best eligible candidates. It keeps a prompt's metres from collapsing "
        "onto the reward's favourite, but on the default corpus the reward gained half as much and the judge "
        "did not confirm it (README); 'length' (short / middle / long against the thirds of the real pieces' "
        "lengths in bars); empty = the best candidates whatever their style (NotaGen).",
    )
    pair_within_style: bool = option(
        False,
        help="With chosen_like_real: the rejected come from the worst of each style's own candidates and pair "
        "only with the chosen of their style, so a pair teaches what is better within a metre, not to leave it "
        "(rejected drawn from the whole ranking are mostly of the styles the reward dislikes).",
    )
    direction_guard: str = option(
        "warn",
        help="Before DPO, each prompt's pairs are checked against its real music (pipelines/campaign/"
        "pair_checks.py: the cosine of chosen − rejected with real − candidates on standardised music "
        "statistics). 'warn' logs a prompt whose pairs point away (below min_direction); 'skip' also drops its "
        "pairs (no pairs left: the round carries the policy over); 'off' checks nothing.",
    )
    min_direction: float = option(
        0.0, help="The direction (a cosine in [-1, 1]) below which a prompt's pairs count as pointing away."
    )
    typical_notes_quantile: Optional[float] = option(
        None,
        help="A candidate may be chosen only when its note lengths and melodic intervals (Jensen-Shannon "
        "divergence of its histograms to those of the prompt's real held-out pieces) are no further from the "
        "real pieces than this quantile of the real pieces' own divergences: the reward cannot teach a rhythm "
        "the prompt's music does not use. None turns it off.",
    )
    max_pairs_per_prompt: Optional[int] = option(
        None, help="Cap on chosen × rejected pairs per prompt (a seeded draw); None keeps them all."
    )
    loss_type: str = option(
        "dpop", help="dpop (NotaGen: DPO-Positive) or any TRL DPOTrainer loss_type (sigmoid, ipo, hinge, ...)."
    )
    beta: float = option(0.1, help="β of the DPO family (NotaGen: 0.1).")
    dpop_lambda: float = option(10.0, help="λ of DPOP (NotaGen: 10).")
    reference: str = option(
        "previous",
        help="Reference policy of round k: 'previous' (round k−1's policy, as "
        "NotaGen) or 'initial' (the policy the campaign started from).",
    )
    lr: float = option(1e-6, help="Learning rate (NotaGen: 1e-6 for its large model).")
    warmup_steps: int = option(0, help="Linear warm-up steps; constant afterwards.")
    epochs: float = option(1.0, help="Passes over the round's pairs.")
    batch_pairs: int = option(1, help="Pairs per worker per micro-batch.")
    grad_accum: int = option(1, help="Micro-batches per optimizer step.")
    grad_clip: float = option(1.0, help="Gradient norm clip.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    dropout: float = option(
        0.0, help="Dropout while training on pairs (0 keeps policy and reference log-probs comparable)."
    )
    zero_stage: int = option(1, help="DeepSpeed ZeRO stage (0-3) of the campaign's trainer group.")
    checkpoint_every: int = option(
        0,
        help="Optimizer steps between a round's DeepSpeed checkpoints; a trainer that dies mid-round resumes from "
        "the newest. 0: none (a round started again begins at its first step, from the saved policy).",
    )
    seed: int = option(0, help="Seed of pair capping and data order (the round number is added).")

    def __post_init__(self) -> None:
        check(self.reward in REWARDS, "reward", f"must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        check(self.reward_k >= 1, "reward_k", f"must be ≥ 1, got {self.reward_k}")
        check(0.0 <= self.reward_contrast <= 1.0, "reward_contrast", f"must be in [0, 1], got {self.reward_contrast}")
        check(
            self.direction_guard in GUARDS,
            "direction_guard",
            f"must be one of {', '.join(GUARDS)}, got {self.direction_guard!r}",
        )
        check(-1.0 <= self.min_direction <= 1.0, "min_direction", f"must be in [-1, 1], got {self.min_direction}")
        check(
            not self.pair_within_style or bool(self.chosen_like_real),
            "pair_within_style",
            "needs chosen_like_real (the styles to pair within)",
        )
        check(0 < self.select_portion <= 0.5, "select_portion", f"must be in (0, 0.5], got {self.select_portion}")
        check(0.0 <= self.min_meter_fill <= 1.0, "min_meter_fill", f"must be in [0, 1], got {self.min_meter_fill}")
        unknown = sorted(set(self.chosen_like_real) - set(STYLES))
        check(not unknown, "chosen_like_real", f"unknown {unknown}: choose from {', '.join(STYLES)}")
        check(
            self.cap_quantile is None or 0 < self.cap_quantile <= 1,
            "cap_quantile",
            f"must be in (0, 1] or empty, got {self.cap_quantile}",
        )
        check(
            self.typical_notes_quantile is None or 0 < self.typical_notes_quantile <= 1,
            "typical_notes_quantile",
            f"must be in (0, 1] or empty, got {self.typical_notes_quantile}",
        )
        check(
            self.max_pairs_per_prompt is None or self.max_pairs_per_prompt >= 1,
            "max_pairs_per_prompt",
            "must be ≥ 1 or empty",
        )
        check(
            self.loss_type in LOSS_TYPES, "loss_type", f"must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}"
        )
        check(self.beta > 0, "beta", f"must be > 0, got {self.beta}")
        check(self.dpop_lambda >= 0, "dpop_lambda", f"must be ≥ 0, got {self.dpop_lambda}")
        check(
            self.reference in ("previous", "initial"),
            "reference",
            f"must be 'previous' or 'initial', got {self.reference!r}",
        )
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        check(self.batch_pairs >= 1, "batch_pairs", f"must be ≥ 1, got {self.batch_pairs}")
        check(self.grad_accum >= 1, "grad_accum", f"must be ≥ 1, got {self.grad_accum}")
        check(self.warmup_steps >= 0, "warmup_steps", "must be ≥ 0")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.checkpoint_every >= 0, "checkpoint_every", f"must be ≥ 0, got {self.checkpoint_every}")
        check(self.zero_stage in (0, 1, 2, 3), "zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}")
