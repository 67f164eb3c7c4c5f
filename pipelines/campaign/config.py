"""The ``campaign:`` section: rounds, prompts, candidates, actor pools and where the parts come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from base.typed_config import check, option

# Beyond these a setting is a typo, not a campaign (NotaGen: 3 rounds of ~100 samples per prompt).
MAX_ROUNDS = 1000
MAX_SAMPLES_PER_PROMPT = 100_000


@dataclass
class CampaignConfig:
    """A multi-round CLaMP-DPO campaign (``clampdpo campaign run``)."""

    out_dir: str = option(
        "runs/campaign",
        help="Campaign folder: sft/, evaluator/, judge/, round-NN/, markers/, campaign.json, mlflow.db.",
    )
    rounds: int = option(3, help="DPO rounds K (round 0 is the starting policy, evaluated only).")
    train_prompts: int = option(
        8,
        help="Prompts whose candidates make the pairs (the prompts with the most "
        "ground-truth pieces, held-out prompts excluded); 0 = all eligible.",
    )
    heldout_prompts: int = option(4, help="Prompts never trained on, sampled after every round to measure it.")
    heldout_keys: list[str] = option(
        default_factory=list,
        help="Held-out prompts by key (period_composer_"
        "instrumentation); empty = a seeded draw of "
        "heldout_prompts eligible prompts.",
    )
    min_prompt_pieces: int = option(
        5, help="A prompt needs this many ground-truth pieces (for its centroid) to take part."
    )
    samples_per_prompt: int = option(16, help="Candidates per training prompt per round (NotaGen: 1,000 in all).")
    eval_samples_per_prompt: int = option(
        8,
        help="Samples per held-out prompt in each round's evaluation "
        "(the same seeds every round, so rounds compare pairwise).",
    )
    eval_train_prompts: bool = option(
        True,
        help="Evaluate every round on the training prompts too (eval_samples_per_prompt each, with seeds the "
        "candidates never use), beside the held-out prompts.",
    )
    seed: int = option(0, help="Seed of prompt choice and of every sample's seed.")
    cache_dir: Optional[str] = option(
        "runs/cache",
        help="Where trained policies, evaluators and judges are kept for other campaigns on the same corpus "
        "with the same config (keyed by both); None trains them in every campaign.",
    )
    policy_from: Optional[str] = option(
        None, help="Start from this model folder; None trains one with SFT (train: section) into out_dir/sft."
    )
    evaluator_from: Optional[str] = option(
        None, help="Score with this evaluator folder; None trains one (evaluator: section) into out_dir/evaluator."
    )
    judge_from: Optional[str] = option(
        None,
        help="Independent judge evaluator folder; None trains one "
        "(judge: section) into out_dir/judge unless use_judge is false.",
    )
    use_judge: bool = option(True, help="Score each round's held-out samples with the independent judge too.")
    num_samplers: int = option(1, help="Ray sampler actors (each holds the current policy).")
    cpus_per_sampler: float = option(1, help="CPU cores reserved per sampler actor (also its torch threads).")
    gpus_per_sampler: float = option(0, help="GPUs per sampler actor (fractions share a GPU); 0 = CPU.")
    num_scorers: int = option(1, help="Ray evaluator actors (each holds the evaluator and the judge).")
    cpus_per_scorer: float = option(1, help="CPU cores reserved per evaluator actor.")
    gpus_per_scorer: float = option(0, help="GPUs per evaluator actor; 0 = CPU.")
    unit_size: int = option(8, help="Samples per work unit: the grain of scheduling, retry and resume.")
    max_restarts: int = option(3, help="Times Ray restarts a dead sampler or evaluator actor.")
    max_unit_retries: int = option(3, help="Times a work unit lost with its actor is tried again.")
    overlap_scoring: str = option(
        "auto",
        help="Score each sample unit as soon as it is generated, while sampling goes on: 'auto' (where samplers "
        "and scorers have resources of their own; where they share cores in turn it saves nothing), 'yes', 'no'.",
    )
    weight_channel: str = option(
        "auto",
        help="How each round's policy reaches the samplers: 'object_store' (through host memory, read by every "
        "sampler), 'broadcast' (pushed from the trainer's rank 0 into the samplers' models: NCCL between GPUs, "
        "CUDA IPC on a shared GPU, gloo on CPU) or 'auto' (broadcast where trainer and samplers hold GPUs).",
    )
    best_worst_per_prompt: int = option(
        1, help="Best and worst samples per prompt saved as ABC and MIDI artifacts each round."
    )
    report_every: int = option(
        1,
        help="Write the round's artifacts (best/worst pieces as ABC, MusicXML and MIDI, score histogram) and "
        "rebuild report.html every this many rounds, and at the last round; 0: never. Every round's metrics, "
        "MLflow records and registry entry are written either way. Raise it for long campaigns: each report "
        "renders every listed sample again.",
    )

    def __post_init__(self) -> None:
        check(0 <= self.rounds <= MAX_ROUNDS, "rounds", f"must be in 0..{MAX_ROUNDS}, got {self.rounds}")
        check(self.train_prompts >= 0, "train_prompts", f"must be ≥ 0, got {self.train_prompts}")
        check(
            self.heldout_prompts >= 1 or bool(self.heldout_keys),
            "heldout_prompts",
            f"must be ≥ 1, got {self.heldout_prompts}",
        )
        check(self.min_prompt_pieces >= 1, "min_prompt_pieces", "must be ≥ 1")
        check(
            self.samples_per_prompt >= 2,
            "samples_per_prompt",
            f"pairs need ≥ 2 candidates per prompt, got {self.samples_per_prompt}",
        )
        check(self.eval_samples_per_prompt >= 1, "eval_samples_per_prompt", "must be ≥ 1")
        for name in ("samples_per_prompt", "eval_samples_per_prompt"):
            n = getattr(self, name)
            check(n <= MAX_SAMPLES_PER_PROMPT, name, f"must be ≤ {MAX_SAMPLES_PER_PROMPT:,}, got {n:,}")
        for name in ("num_samplers", "num_scorers", "unit_size"):
            check(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")
        for name in ("cpus_per_sampler", "cpus_per_scorer", "gpus_per_sampler", "gpus_per_scorer"):
            check(getattr(self, name) >= 0, name, f"must be ≥ 0, got {getattr(self, name)}")
        check(self.max_restarts >= 0 and self.max_unit_retries >= 0, "max_restarts", "retries must be ≥ 0")
        check(self.best_worst_per_prompt >= 0, "best_worst_per_prompt", "must be ≥ 0")
        check(self.report_every >= 0, "report_every", f"must be ≥ 0, got {self.report_every}")
        check(
            self.overlap_scoring in ("auto", "yes", "no"),
            "overlap_scoring",
            f"must be auto, yes or no, got {self.overlap_scoring!r}",
        )
        check(
            self.weight_channel in ("auto", "object_store", "broadcast"),
            "weight_channel",
            f"must be auto, object_store or broadcast, got {self.weight_channel!r}",
        )
