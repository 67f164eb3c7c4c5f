"""The project config: one YAML file with a section per stage (each stage owns its section's dataclass),
plus where the work runs (``cluster:``); presets live in ``configs/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from base.tracking import TrackingConfig
from base.typed_config import ConfigError, apply_overrides, check, from_dict, load_yaml, option
from evaluators.config import EvaluatorConfig
from models.config import ModelConfig
from models.sampling_config import SamplingConfig
from pipelines.campaign.config import CampaignConfig
from pipelines.data.config import DataConfig
from pipelines.dpo.config import DPORoundConfig
from pipelines.train.config import SFTConfig

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ClusterConfig:
    """Where training runs: SFT's Ray Train workers and the campaign's DPO trainer group."""

    ray_address: Optional[str] = option(
        None, help="Ray cluster address ('auto' or host:port); None starts a local Ray in this process."
    )
    num_workers: int = option(1, help="Training workers (one process each; one GPU each when GPUs are used).")
    cpus_per_worker: int = option(
        1, help="CPU cores per training worker (its torch threads; reserved whole where the cluster has room)."
    )
    use_gpu: str = option("auto", help="'auto' (GPUs when the cluster has them), 'yes' or 'no'.")
    precision: str = option("auto", help="'auto' (bf16 on GPUs that support it, else fp32), 'bf16' or 'fp32'.")

    def __post_init__(self) -> None:
        check(self.num_workers >= 1, "num_workers", f"must be ≥ 1, got {self.num_workers}")
        check(self.cpus_per_worker >= 1, "cpus_per_worker", f"must be ≥ 1, got {self.cpus_per_worker}")
        check(self.use_gpu in ("auto", "yes", "no"), "use_gpu", f"must be auto, yes or no, got {self.use_gpu!r}")
        check(
            self.precision in ("auto", "bf16", "fp32"),
            "precision",
            f"must be auto, bf16 or fp32, got {self.precision!r}",
        )


@dataclass
class ProjectConfig:
    """All settings of a clampdpo run, one section per stage."""

    data: DataConfig = option(default_factory=DataConfig, help="Corpus building.")
    model: ModelConfig = option(default_factory=ModelConfig, help="The NotaGen decoder: size or weights.")
    train: SFTConfig = option(default_factory=SFTConfig, help="Supervised pre-training / fine-tuning.")
    sampling: SamplingConfig = option(default_factory=SamplingConfig, help="Sampling pieces from the model.")
    evaluator: EvaluatorConfig = option(default_factory=EvaluatorConfig, help="The CLaMP-style evaluator.")
    judge: EvaluatorConfig = option(
        default_factory=lambda: EvaluatorConfig(subset="odd", seed=1, out_dir="runs/judge"),
        help="The campaign's independent judge: an evaluator trained on another half of the corpus with another seed "
        "and, in the default preset, another design than the reward's (its preprocessing, no hard negatives, no "
        "centroid margin), so that it does not share the reward's blind spots.",
    )
    dpo: DPORoundConfig = option(default_factory=DPORoundConfig, help="Pairs and DPO training of each round.")
    campaign: CampaignConfig = option(default_factory=CampaignConfig, help="Rounds, prompts, actor pools.")
    cluster: ClusterConfig = option(default_factory=ClusterConfig, help="Ray workers, GPUs and precision.")
    tracking: TrackingConfig = option(default_factory=TrackingConfig, help="MLflow tracking.")


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a preset in ``configs/`` (``tiny`` → configs/tiny.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = CONFIGS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"config {name_or_path}: no such file and no such preset (presets: {', '.join(preset_names())})")


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> ProjectConfig:
    """Load a preset or YAML file (or the defaults when None) and apply ``section.field=value`` overrides."""
    data: dict[str, Any] = load_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    apply_overrides(data, list(overrides or []))
    return from_dict(ProjectConfig, data)


def campaign_config(folder: str | Path) -> tuple[ProjectConfig, str]:
    """The config a campaign folder was started with and its preset name (``resume`` and ``status`` read it)."""
    from pipelines.campaign.identity import read_state

    state = read_state(folder)
    return from_dict(ProjectConfig, state["config"]), str(state.get("config_name", ""))
