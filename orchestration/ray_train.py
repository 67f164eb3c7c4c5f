"""Launch DeepSpeed training on Ray Train workers (local Ray on a laptop, or an existing cluster)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import atomic
from pipelines.config import ProjectConfig
from pipelines.typed_config import to_dict

log = logging.getLogger(__name__)


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (an existing cluster) or start a local Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": a new Ray in this process, even where `ray start` left a cluster address behind
        # (plain ray.init() would join that cluster, or wait for it when it is gone)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env={"worker_process_setup_hook": "orchestration.ray_train.quiet_worker_logs"})


# Without a dashboard (a local Ray started here has none) Ray Train's placement-group cleaner cannot
# reach the state API and warns about it every second for the whole run.
NOISY_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def quiet_worker_logs() -> None:
    """Runs in every worker process of a local Ray (``worker_process_setup_hook``)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def resolve_gpu(setting: str) -> bool:
    import ray

    if setting == "no":
        return False
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if setting == "yes" and not has_gpu:
        raise RuntimeError("cluster.use_gpu is 'yes' but the Ray cluster has no GPUs")
    return has_gpu


def scaling(project: ProjectConfig):
    from ray.train import ScalingConfig

    use_gpu = resolve_gpu(project.cluster.use_gpu)
    return ScalingConfig(num_workers=project.cluster.num_workers, use_gpu=use_gpu,
                         resources_per_worker={"CPU": project.cluster.cpus_per_worker,
                                               **({"GPU": 1} if use_gpu else {})})


@dataclass
class SFTResult:
    out_dir: Path
    model_dir: Path
    summary: dict[str, Any]
    baseline_bpc: float
    run_id: str | None


def run_sft(project: ProjectConfig, config_name: str = "") -> SFTResult:
    """Train the decoder on the corpus per ``project.train``; returns where the model is and its metrics."""
    import mlflow
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from models.patchilizer import Patchilizer
    from orchestration.sft_worker import sft_worker
    from orchestration.tracking import flatten, tracking_uri, use_experiment
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
    baseline = unigram_bits(PatchBatches(train_pieces, patchilizer, cfg.seed),
                            eval_set.eval_batches(cfg.batch_pieces, cfg.eval_pieces))
    log.info("corpus %s: %d train / %d eval pieces; char-unigram baseline %.3f bits/char",
             corpus, len(train_pieces), len(eval_pieces), baseline)

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

        ensure_ray(project.cluster.ray_address)
        payload = {"project": to_dict(project), "out_dir": str(out), "corpus": str(corpus),
                   "tracking_uri": uri, "run_id": run.info.run_id}
        trainer = TorchTrainer(sft_worker, train_loop_config=payload, scaling_config=scaling(project),
                               run_config=RunConfig(name="sft", storage_path=str(out / "ray")))
        trainer.fit()
        summary = json.loads((out / "sft_summary.json").read_text())
        summary["baseline/unigram_bpc"] = baseline
        atomic.write_json(out / "sft_summary.json", summary)
        mlflow.log_artifact(str(out / "sft_summary.json"))
        mlflow.log_artifacts(str(out / "model"), artifact_path="model")
    finally:
        mlflow.end_run()
    return SFTResult(out, out / "model", summary, baseline, run.info.run_id)
