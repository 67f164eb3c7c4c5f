"""Where everything of a campaign lives inside its folder: one place for every path.

campaign.json  markers/  prompts.json  mlflow.db  mlartifacts/
sft/ evaluator/ judge/                      (when trained here)
round-NN/samples/ scores/ pairs.jsonl dpo/policy/ eval/ metrics.json artifacts/ run.json
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

    def stage_dir(self, section: str) -> Path:
        """Output folder of a set-up stage trained here: ``sft``, ``evaluator`` or ``judge``."""
        return self.root / ("sft" if section == "train" else section)

    def round_dir(self, k: int) -> Path:
        return self.root / f"round-{k:02d}"

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

    def run_file(self, k: int) -> Path:
        """The id of round k's MLflow child run."""
        return self.round_dir(k) / "run.json"


SAMPLES_FILE = "samples.jsonl"
SCORES_FILE = "scores.jsonl"
