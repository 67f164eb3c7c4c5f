"""Where everything of a campaign lives inside its folder: one place for every path.

campaign.json  markers/  prompts.json  mlflow.db  mlartifacts/
sft/ evaluator/ judge/                      (when trained here)
round-NN/samples/ scores/ pairs.jsonl dpo/policy/ eval/ metrics.json artifacts/ run.json   report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CAMPAIGN_FILE = "campaign.json"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / CAMPAIGN_FILE

    @property
    def prompts_file(self) -> Path:
        return self.root / "prompts.json"

    @property
    def real(self) -> Path:
        """The real held-out pieces of the evaluated prompts, scored as samples are (``units/``, scores.jsonl)."""
        return self.root / "real"

    @property
    def real_music(self) -> Path:
        """The music statistics of every piece of the corpus, both splits (what round metrics and pair checks
        measure samples against: pipelines/campaign/music_metrics.py)."""
        return self.real / "corpus" / "music.jsonl"

    def stage_dir(self, section: str) -> Path:
        """Output folder of a set-up stage trained here: ``sft``, ``evaluator`` or ``judge``."""
        return self.root / ("sft" if section == "train" else section)

    def round_dir(self, k: int) -> Path:
        return self.root / round_name(k)

    def rounds(self) -> list[int]:
        """The rounds that have a folder here, in numeric order (a name sort puts round-100 before round-11)."""
        found = (round_of(d.name) for d in self.root.glob("round-*") if d.is_dir())
        return sorted(k for k in found if k is not None)

    def evaluated_rounds(self) -> list[int]:
        """The rounds whose ``metrics.json`` exists, in numeric order."""
        return [k for k in self.rounds() if self.metrics(k).is_file()]

    def samples(self, k: int) -> Path:
        """Folder of round k's candidates (``units/`` and the merged ``samples.jsonl``)."""
        return self.round_dir(k) / "samples"

    def scores(self, k: int) -> Path:
        return self.round_dir(k) / "scores"

    def pairs(self, k: int) -> Path:
        return self.round_dir(k) / "pairs.jsonl"

    def dpo(self, k: int) -> Path:
        return self.round_dir(k) / "dpo"

    def trained_policy(self, k: int) -> Path:
        """The policy round k's DPO wrote (k ≥ 1)."""
        return self.dpo(k) / "policy"

    def eval_samples(self, k: int) -> Path:
        return self.round_dir(k) / "eval" / "samples"

    def eval_scores(self, k: int) -> Path:
        return self.round_dir(k) / "eval" / "scores"

    def metrics(self, k: int) -> Path:
        return self.round_dir(k) / "metrics.json"

    def artifacts(self, k: int) -> Path:
        return self.round_dir(k) / "artifacts"

    def outputs(self, stage: str, info: dict) -> list[Path]:
        """What a finished stage wrote and its marker records (files or folders, checked before trusted)."""
        if stage == "corpus":
            return [Path(info["corpus"]) / "manifest.jsonl"] if info.get("corpus") else []
        if stage == "policy":
            return [Path(info["policy"])] if info.get("policy") else []
        if stage in ("evaluator", "judge"):  # the weights and centroids, not the feature cache beside them
            return [Path(info["dir"]) / "model", Path(info["dir"]) / "reference.npz"] if info.get("dir") else []
        if stage == "prompts":
            return [self.prompts_file]
        if stage == "real":
            return [self.real]
        return self.made_here(stage)

    def made_here(self, stage: str) -> list[Path]:
        """The campaign-local outputs of a round stage: removed when an earlier stage is redone, since they
        were made from inputs that will change (set-up stages overwrite theirs, or live in the shared cache)."""
        if stage == "real":
            return [self.real]
        k, step = parse_stage(stage)
        if k is None:
            return []
        return {
            "sample": [self.samples(k)],
            "score": [self.scores(k)],
            "pairs": [self.pairs(k)],
            "dpo": [self.dpo(k)],
            "eval": [self.round_dir(k) / "eval", self.metrics(k)],
            "report": [self.artifacts(k)],
        }[step]

    def run_file(self, k: int) -> Path:
        """The id of round k's MLflow child run."""
        return self.round_dir(k) / "run.json"


# "report" (the round's MIDI, histogram, HTML report, MLflow records and registry entry) reads the round's
# outputs and no later stage reads its own: redoing it makes nothing stale (``pipelines.campaign.stages``)
ROUND_STEPS = ("sample", "score", "pairs", "dpo", "eval", "report")


def round_name(k: int) -> str:
    """``round-07``; rounds past 99 keep every digit (``round-100``)."""
    return f"round-{k:02d}"


def round_of(name: str) -> int | None:
    """The round a folder or stage prefix names (``round-07`` -> 7, ``round-100`` -> 100); None otherwise,
    including other spellings of a number (``round-7``, ``round-007``): those are not the folder
    ``round_dir`` would use, so taking them for a round would read or clear the wrong folder."""
    head, sep, digits = name.partition("-")
    if head != "round" or not sep or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits) if round_name(int(digits)) == name else None


def stage_name(k: int, step: str) -> str:
    """The one spelling of a round stage's name: ``round-03/pairs``."""
    if step not in ROUND_STEPS:
        raise ValueError(f"unknown round step {step!r} (one of {', '.join(ROUND_STEPS)})")
    return f"{round_name(k)}/{step}"


def parse_stage(stage: str) -> tuple[int | None, str]:
    """(round, step) of a round stage; (None, stage) for a set-up stage such as ``corpus`` or ``real``."""
    head, sep, step = stage.partition("/")
    k = round_of(head)
    if k is None or not sep or step not in ROUND_STEPS:
        return None, stage
    return k, step


SAMPLES_FILE = "samples.jsonl"
SCORES_FILE = "scores.jsonl"
