"""SFT of the decoder on Ray Train workers with DeepSpeed (the campaign's DPO rounds run on its long-lived
trainer group instead: ``orchestration.trainer_group``).

The driver side: it checks what it can before starting workers, builds the typed job each worker reads
(``SFTJob``), runs the worker group and reads back the summary rank 0 wrote.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base import atomic
from base.typed_config import to_dict
from orchestration.config import ProjectConfig
from orchestration.ray_runtime import ensure_ray, torch_trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTJob:
    """What every SFT worker needs (``sft_worker``)."""

    project: ProjectConfig
    out_dir: str
    corpus: str
    tracking_uri: str
    run_id: str


@dataclass
class SFTResult:
    out_dir: Path
    model_dir: Path
    summary: dict[str, Any]
    baseline_bpc: float
    run_id: str | None


def _fit(worker: Any, job: SFTJob, project: ProjectConfig, name: str, storage: Path) -> None:
    ensure_ray(project.cluster.ray_address)
    torch_trainer(worker, {"job": job}, project.cluster, name, str(storage)).fit()


def run_sft(project: ProjectConfig, config_name: str = "") -> SFTResult:
    """Train the decoder on the corpus per ``project.train``; returns where the model is and its metrics."""
    import mlflow

    from base.tracking import flatten, tracking_uri, use_experiment
    from models.patchilizer import Patchilizer
    from orchestration.sft_worker import sft_worker
    from pipelines.data.build import ensure_corpus
    from pipelines.train.sft import PatchBatches, load_split, unigram_bits

    cfg = project.train
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus = ensure_corpus(project.data).resolve()
    train_pieces, eval_pieces = load_split(corpus, "train"), load_split(corpus, "eval")  # fail early, on the driver
    if not eval_pieces:
        raise ValueError(f"{corpus}: the eval split is empty (raise data.eval_fraction)")

    hf = project.model.hf_config()
    patchilizer = Patchilizer(patch_size=hf.patch_size, patch_length=hf.patch_length)
    eval_set = PatchBatches(eval_pieces, patchilizer, cfg.seed)
    baseline = unigram_bits(
        PatchBatches(train_pieces, patchilizer, cfg.seed), eval_set.eval_batches(cfg.batch_pieces, cfg.eval_pieces)
    )
    log.info(
        "corpus %s: %d train / %d eval pieces; char-unigram baseline %.3f bits/char",
        corpus,
        len(train_pieces),
        len(eval_pieces),
        baseline,
    )

    uri = tracking_uri(project.tracking.tracking_uri, out)
    use_experiment(uri, project.tracking.experiment, out)
    state_file = out / "run.json"
    previous = json.loads(state_file.read_text()) if state_file.is_file() and cfg.resume else {}
    run = mlflow.start_run(run_id=previous.get("run_id"), run_name=None if previous else "sft")
    try:
        if not previous:
            mlflow.log_params(flatten(to_dict(project)))
            mlflow.set_tags({"clampdpo.stage": "sft", "clampdpo.config": config_name})
        mlflow.log_metric("baseline/unigram_bpc", baseline)
        atomic.write_json(state_file, {"run_id": run.info.run_id})
        _fit(sft_worker, SFTJob(project, str(out), str(corpus), uri, run.info.run_id), project, "sft", out / "ray")
        summary = json.loads((out / "sft_summary.json").read_text())
        summary["baseline/unigram_bpc"] = baseline
        atomic.write_json(out / "sft_summary.json", summary)
        mlflow.log_artifact(str(out / "sft_summary.json"))
        mlflow.log_artifacts(str(out / "model"), artifact_path="model")
    finally:
        mlflow.end_run()
    return SFTResult(out, out / "model", summary, baseline, run.info.run_id)
