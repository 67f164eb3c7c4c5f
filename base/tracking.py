"""MLflow helpers: where the store is, flat params, and logging from a worker by run id."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from base.typed_config import option

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig:
    """MLflow tracking."""

    tracking_uri: Optional[str] = option(
        None, help="MLflow tracking URI; None = a sqlite store (mlflow.db) inside the run's output folder."
    )
    experiment: str = option("clampdpo", help="MLflow experiment name.")


def tracking_uri(configured: str | None, out_dir: str | Path) -> str:
    """The configured URI, or a sqlite store inside the output folder (absolute, so workers find it)."""
    if configured:
        return configured
    return f"sqlite:///{Path(out_dir).resolve() / 'mlflow.db'}"


def use_experiment(uri: str, name: str, out_dir: str | Path) -> str:
    """Point MLflow at ``uri`` and experiment ``name``; returns the experiment id.

    With a local sqlite store MLflow would put artifacts in ``./mlruns`` of whatever folder the process
    happens to run in, so a new experiment keeps its artifacts beside the store instead.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    elif not uri.startswith(("http://", "https://", "databricks")):
        location = (Path(out_dir).resolve() / "mlartifacts").as_uri()
    experiment_id = mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND: TRAINING_KIND})
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# MLflow 3's UI opens an experiment in its GenAI view (traces) unless the experiment says it holds training runs
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``, values cut to MLflow's param length."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = str(data)[:6000]
    return out


class MetricLogger:
    """Logs metrics into an existing run from any process (the rank-0 worker, an actor)."""

    def __init__(self, uri: str, run_id: str | None):
        self.run_id = run_id
        self.client = None
        if run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.log_steps([(step, metrics)])

    def last_step(self, key: str) -> int:
        """The highest step the run already has for ``key`` (0 when none): what a restarted worker must not
        log again."""
        if not self.client:
            return 0
        try:
            return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)
        except Exception as err:  # tracking must never stop training
            log.warning("MLflow metric history unavailable: %s", err)
            return 0

    def log_steps(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        """Several steps' metrics in as few writes as MLflow allows (one per 1,000 values): a write per step
        costs a database transaction each, seconds over a round."""
        if not self.client or not steps:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, metrics in steps for k, v in metrics.items()]
        try:
            for i in range(0, len(batch), 1000):
                self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        except Exception as err:  # tracking must never stop training
            log.warning("MLflow logging failed: %s", err)
