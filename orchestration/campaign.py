"""The CLaMP-DPO campaign driver: the list of stages, run in order over one runtime.

Set-up: corpus → policy → evaluator → judge → prompts → real. Round 0: eval, report. Round k: sample →
score → pairs → dpo → eval → report. Each stage is a record (``pipelines.campaign.stages``) with a marker
that records what it wrote; ``StageRunner`` skips what is done, redoes what is damaged and makes stale what
a redone stage fed. The stages' bodies live beside this file (``setup_stages``, ``round_stages``,
``round_report``); every Ray call they need goes through the runtime (``orchestration.runtime``), so this
module holds no Ray and runs in-process over any ``CampaignRuntime``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from base.typed_config import ConfigError, to_dict
from orchestration.config import ProjectConfig, campaign_config
from orchestration.round_report import CampaignRecords
from orchestration.round_stages import RoundStages
from orchestration.runtime import CampaignRuntime
from orchestration.setup_stages import Setup, SetupCache, build_corpus, choose_prompts, train_evaluator, train_policy
from pipelines.campaign import identity, plan
from pipelines.campaign.compare import load_rounds
from pipelines.campaign.layout import Layout, stage_name
from pipelines.campaign.stages import StageRunner

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[ProjectConfig], CampaignRuntime]


def ray_runtime(project: ProjectConfig) -> CampaignRuntime:
    from orchestration.runtime import RayRuntime

    return RayRuntime(project)


class Campaign:
    """One campaign folder: its config and the stages that fill it. Constructing one touches nothing on disk;
    ``run`` opens the folder, runs every stage not done yet and returns the round table's rows."""

    def __init__(
        self,
        project: ProjectConfig,
        config_name: str = "",
        rebuild: bool = False,
        runtime: RuntimeFactory = ray_runtime,
    ):
        from base.tracking import tracking_uri

        self.layout = Layout(Path(project.campaign.out_dir).resolve())
        self.uri = uri = tracking_uri(project.tracking.tracking_uri, self.layout.root)
        # the stages' own output folders and the tracking store live inside the campaign folder
        self.project = replace(
            project,
            train=replace(project.train, out_dir=str(self.layout.stage_dir("train"))),
            evaluator=replace(project.evaluator, out_dir=str(self.layout.stage_dir("evaluator"))),
            judge=replace(project.judge, out_dir=str(self.layout.stage_dir("judge"))),
            tracking=replace(project.tracking, tracking_uri=uri),
        )
        self.config_name, self.make_runtime = config_name, runtime
        self.cache = SetupCache(self.project.campaign.cache_dir, rebuild)
        self.runner = StageRunner(self.layout, self.project.campaign.rounds)
        # what the config was before the campaign's own paths were filled in: what a resume compares
        self._config = to_dict(replace(self.project, tracking=project.tracking))

    def run(self) -> list[dict[str, float]]:
        """Every stage in order (finished ones skipped); returns the round table's rows."""
        records = self.open()
        runtime = self.make_runtime(self.project)
        status = "FAILED"
        try:
            setup = self.set_up(runtime, records)
            rounds = RoundStages(self.project, self.layout, setup, runtime, records, self.cache)
            stage = self.runner.run
            stage("real", rounds.score_real)
            for k in range(self.project.campaign.rounds + 1):
                if k > 0:
                    stage(stage_name(k, "sample"), partial(rounds.sample, k))
                    stage(stage_name(k, "score"), partial(rounds.score, k))
                    stage(stage_name(k, "pairs"), partial(rounds.pairs, k))
                    stage(stage_name(k, "dpo"), partial(rounds.dpo, k))
                stage(stage_name(k, "eval"), partial(rounds.evaluate, k))
                shown = self.project.campaign.best_worst_per_prompt
                report = partial(records.report, k, rounds.policy(k).path, self.writes_artifacts(k), shown)
                stage(stage_name(k, "report"), report)
            status = "FINISHED"
        finally:
            runtime.shutdown()
            records.tracker.finish(records.parent, status)
        return load_rounds(self.layout.root)

    def writes_artifacts(self, k: int) -> bool:
        """Whether round k's report writes its pieces and the HTML report (``campaign.report_every``)."""
        c = self.project.campaign
        return c.report_every > 0 and (k % c.report_every == 0 or k == c.rounds)

    def set_up(self, runtime: CampaignRuntime, records: CampaignRecords) -> Setup:
        """The set-up stages, in order; what they found or made."""
        p, stage = self.project, self.runner.run
        corpus = Path(stage("corpus", lambda: build_corpus(p))["corpus"])
        policy = stage("policy", lambda: train_policy(p, corpus, self.cache, runtime, records.adopt, self.config_name))
        uri = self.uri
        evaluator = stage("evaluator", lambda: train_evaluator(p, "evaluator", corpus, self.cache, records.adopt, uri))
        judge = stage("judge", lambda: train_evaluator(p, "judge", corpus, self.cache, records.adopt, uri))
        stage("prompts", lambda: choose_prompts(p, self.layout, corpus, evaluator["dir"]))
        prompts = plan.Prompts.from_dict(json.loads(self.layout.prompts_file.read_text()))
        return Setup(corpus, policy["policy"], evaluator["dir"], judge["dir"], prompts)

    def open(self) -> CampaignRecords:
        """Make the folder, check that it holds this campaign (or none yet), and open its MLflow parent run."""
        from orchestration.campaign_tracking import CampaignTracker

        root = self.layout.root
        root.mkdir(parents=True, exist_ok=True)
        state = self._identity()
        tracking = self.project.tracking
        tracker = CampaignTracker(self.uri, tracking.experiment, root)
        if not state.get("parent_run_id"):
            state["parent_run_id"] = tracker.start_parent(
                f"campaign-{root.name}",
                to_dict(self.project),
                {"clampdpo.config": self.config_name, "clampdpo.dir": str(root)},
            )
        else:
            tracker.reopen(state["parent_run_id"])
        identity.write_state(root, state)
        return CampaignRecords(tracker, state["parent_run_id"], self.layout, state)

    def _identity(self) -> dict[str, Any]:
        """The folder's saved state; a folder holding a campaign with another config is refused."""
        if not self.layout.state_file.is_file():
            return identity.new_state(self._config, self.config_name)
        saved = identity.read_state(self.layout.root)
        # read back through the config classes: a setting added since the campaign began takes its default
        changed = identity.changed_sections(self._config, to_dict(campaign_config(self.layout.root)[0]))
        if changed:
            raise ConfigError(
                f"campaign.out_dir: {self.layout.root} holds a campaign with another config "
                f"(sections {', '.join(changed)} differ); resume it with `clampdpo campaign resume "
                f"{self.layout.root}` or choose another --out"
            )
        return saved


def run_campaign(
    project: ProjectConfig,
    config_name: str = "",
    rebuild: bool = False,
    command: str = "campaign run",
    runtime: RuntimeFactory = ray_runtime,
) -> tuple[Path, list[dict[str, float]]]:
    """Run (or continue) the campaign of ``project``; its folder is held for this process from before anything
    in it is read or written (``FolderLock``: a second writer is refused, naming the first)."""
    from base.folder_lock import FolderLock

    with FolderLock(Path(project.campaign.out_dir).resolve(), command):
        campaign = Campaign(project, config_name, rebuild, runtime)
        return campaign.layout.root, campaign.run()


def resume_campaign(out_dir: str | Path, ray_address: str | None = None) -> tuple[Path, list[dict[str, float]]]:
    """Continue a campaign from its own saved config (optionally on another Ray cluster)."""
    project, name = campaign_config(out_dir)
    if ray_address:
        project = replace(project, cluster=replace(project.cluster, ray_address=ray_address))
    project = replace(project, campaign=replace(project.campaign, out_dir=str(Path(out_dir).resolve())))
    return run_campaign(project, name, command="campaign resume")
