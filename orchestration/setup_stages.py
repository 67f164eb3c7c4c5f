"""The set-up stages of a campaign: corpus, policy, evaluator, judge and prompts, each returning what its
marker records.

A trained part is taken from ``campaign.cache_dir`` when one was trained before on the same corpus with the
same config (``pipelines.campaign.stage_cache``), or from ``campaign.policy_from`` / ``evaluator_from`` /
``judge_from``; training itself runs through the runtime (SFT on Ray Train) or in this process (the
evaluators).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base import atomic
from base.typed_config import to_dict
from pipelines.campaign import plan

if TYPE_CHECKING:
    from orchestration.config import ProjectConfig
    from orchestration.runtime import CampaignRuntime
    from pipelines.campaign.layout import Layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """What the set-up stages found or made, which every round stage reads."""

    corpus: Path
    policy: str  # the starting policy's folder
    evaluator_dir: str
    judge_dir: str | None
    prompts: plan.Prompts


@dataclass(frozen=True)
class SetupCache:
    """The shared cache of trained set-up parts (``campaign.cache_dir``), keyed by corpus and config."""

    cache_dir: str | None
    rebuild: bool  # train again instead of taking a cached part (a new result is still stored)

    def find(self, kind: str, corpus: Path, config: dict[str, Any]) -> tuple[str, Path | None]:
        """The cache key of a part and its cached folder, if any."""
        from pipelines.campaign.stage_cache import corpus_fingerprint, lookup, stage_key

        key = stage_key(kind, corpus_fingerprint(corpus), config)
        if not self.cache_dir or self.rebuild:
            return key, None
        hit = lookup(self.cache_dir, key)
        # absolute: training workers and actors run in folders of their own, where a relative path leads nowhere
        return key, hit.resolve() if hit is not None else None

    def store(self, key: str, source: Path, names: list[str], meta: dict[str, Any]) -> None:
        if self.cache_dir:
            from pipelines.campaign.stage_cache import store

            store(self.cache_dir, key, source, names, meta)


Adopt = Callable[[str | None], None]  # makes a stage's own MLflow run a child of the campaign's run


def build_corpus(project: ProjectConfig) -> dict[str, Any]:
    from pipelines.data.build import ensure_corpus

    return {"corpus": str(ensure_corpus(project.data).resolve())}


def cache_config(project: ProjectConfig, kind: str) -> dict[str, Any]:
    """What shapes a trained part (``policy``, ``evaluator`` or ``judge``), so what its cache key hashes: its own
    sections, never the campaign's rounds, seed or DPO (a campaign on another seed starts from the same parts);
    for the policy the worker count too, since its data order depends on it."""
    if kind == "policy":
        return {
            "model": to_dict(project.model),
            "train": to_dict(project.train),
            "cluster": {"num_workers": project.cluster.num_workers},
        }
    return to_dict(getattr(project, kind))


def train_policy(
    project: ProjectConfig, corpus: Path, cache: SetupCache, runtime: CampaignRuntime, adopt: Adopt, config_name: str
) -> dict[str, Any]:
    c = project.campaign
    if c.policy_from:
        from models.config import load_model

        load_model(c.policy_from)  # fail now, with the loader's message, not in an actor
        return {"policy": str(Path(c.policy_from).resolve()), "trained": False}
    key, hit = cache.find("policy", corpus, cache_config(project, "policy"))
    if hit is not None:
        log.info("policy: trained before on this corpus with this config (%s)", hit)
        metrics = json.loads((hit / "cache.json").read_text())["metrics"]
        return {"policy": str(hit / "model"), "trained": False, "cache": str(hit), **metrics}
    result = runtime.train_policy(config_name)
    adopt(result.run_id)
    metrics = {"eval/bpc": result.summary.get("eval/bpc"), "baseline/unigram_bpc": result.baseline_bpc}
    cache.store(key, result.out_dir, ["model", "sft_summary.json"], {"metrics": metrics})
    return {"policy": str(Path(result.model_dir).resolve()), "trained": True, **metrics}


def train_evaluator(
    project: ProjectConfig, section: str, corpus: Path, cache: SetupCache, adopt: Adopt, tracking_uri: str
) -> dict[str, Any]:
    """The evaluator (``section`` 'evaluator') or the independent judge ('judge'; none unless
    ``campaign.use_judge``)."""
    c = project.campaign
    if section == "judge" and not c.use_judge:
        return {"dir": None}
    given = c.evaluator_from if section == "evaluator" else c.judge_from
    if given:
        from evaluators.evaluator import Evaluator

        Evaluator.load(given)  # fail now, with the loader's message
        return {"dir": str(Path(given).resolve()), "trained": False}
    cfg = getattr(project, section)
    key, hit = cache.find(section, corpus, cache_config(project, section))
    if hit is not None:
        log.info("%s: trained before on this corpus with this config (%s)", section, hit)
        return {"dir": str(hit), "trained": False, "cache": str(hit), **json.loads((hit / "report.json").read_text())}
    from evaluators.train import train_evaluator as train

    result = train(
        cfg,
        corpus,
        tracking_uri,
        project.tracking.experiment,
        {section: to_dict(cfg), "data": to_dict(project.data)},
    )
    adopt(result.run_id)
    cache.store(key, result.out_dir, ["model", "reference.npz", "report.json"], {})
    numbers = {k: v for k, v in result.report.items() if isinstance(v, (int, float))}
    return {"dir": str(result.out_dir.resolve()), "trained": True, **numbers}


def choose_prompts(project: ProjectConfig, layout: Layout, corpus: Path, evaluator_dir: str) -> dict[str, Any]:
    """The training and held-out prompts: those the evaluator has centroids for, with enough pieces."""
    from evaluators.evaluator import Reference

    scored = set(Reference.load(Path(evaluator_dir) / "reference.npz").prompts)
    prompts = plan.choose_prompts(plan.corpus_prompts(corpus), project.campaign, scored)
    atomic.write_json(layout.prompts_file, prompts.to_dict())
    return {"train": len(prompts.train), "heldout": len(prompts.heldout)}
