"""MLflow for a campaign: one parent run, one child run per round, artifacts, and the policy registry.

Runs are created through ``MlflowClient`` (not the fluent active run), so the SFT and evaluator stages —
which open fluent runs of their own — can run while the campaign's parent run stays open; they are
tagged as its children afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

from base.tracking import flatten, use_experiment
from pipelines.campaign.layout import round_name

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"


class CampaignTracker:
    def __init__(self, uri: str, experiment: str, out_dir: Path):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment_id = use_experiment(uri, experiment, out_dir)
        self.client = MlflowClient(tracking_uri=uri)
        self.registry_name = f"{experiment}-policy"

    # ------------------------------------------------------------------ runs

    def start_parent(self, name: str, params: dict, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"clampdpo.stage": "campaign", **tags})
        for chunk in _chunks(flatten(params), 100):
            self.client.log_batch(run.info.run_id, params=_params(chunk))
        return run.info.run_id

    def start_child(self, parent_id: str, name: str, tags: dict[str, str] | None = None) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={PARENT_TAG: parent_id, "clampdpo.stage": "round", **(tags or {})}
        )
        return run.info.run_id

    def adopt(self, parent_id: str, run_id: str | None) -> None:
        """Make a stage's own run (SFT, evaluator training) a child of the campaign run."""
        if run_id:
            self.client.set_tag(run_id, PARENT_TAG, parent_id)

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not math.isnan(float(v))
        ]
        for chunk in _chunks(batch, 500):
            self.client.log_batch(run_id, metrics=chunk)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    # ------------------------------------------------------------------ registry

    def register_policy(self, run_id: str, policy_dir: Path, round_: int) -> str:
        """Log the round's policy under the child run and register it as a new model version."""
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(run_id, str(policy_dir), "policy")
        try:
            self.client.get_registered_model(self.registry_name)
        except MlflowException:
            self.client.create_registered_model(
                self.registry_name, description="Policies of CLaMP-DPO rounds (clampdpo campaign)"
            )
        source = f"{self.client.get_run(run_id).info.artifact_uri}/policy"
        version = self.client.create_model_version(
            self.registry_name, source, run_id=run_id, tags={"round": str(round_)}
        )
        self.client.set_registered_model_alias(self.registry_name, round_name(round_), version.version)
        return version.version

    def set_best(self, version: str) -> None:
        self.client.set_registered_model_alias(self.registry_name, "best", version)


def _params(items: list[tuple[str, str]]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in items]


def _chunks(items: dict | list, n: int) -> Iterator[list]:
    items = list(items.items()) if isinstance(items, dict) else list(items)
    for i in range(0, len(items), n):
        yield items[i : i + n]
