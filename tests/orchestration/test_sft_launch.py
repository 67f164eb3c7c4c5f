"""SFT end to end on the real stack: Ray Train worker, DeepSpeed engine, MLflow, checkpoints, resume."""

from __future__ import annotations

import mlflow
import pytest
import torch

from models.config import load_model
from models.patchilizer import Patchilizer
from orchestration.config import load_config
from orchestration.ray_train import run_sft
from pipelines.train.sft import PatchBatches, evaluate, load_split
from tests.conftest import write_corpus

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out


def test_sft_lowers_loss_and_resumes(tmp_path):
    write_corpus(tmp_path / "corpus", {"chorale": (4, 4), "jig": (4, 4)}, per_style=2, eval_per_style=1)
    overrides = [
        f"data.out_dir={tmp_path / 'corpus'}",
        f"train.out_dir={tmp_path / 'run'}",
        "model.hidden_size=64",
        "model.patch_num_layers=1",
        "model.char_num_layers=1",
        "model.patch_length=64",
        "model.dropout=0.0",
        "train.batch_pieces=2",
        "train.max_steps=15",
        "train.warmup_steps=2",
        "train.lr=3e-3",
        "train.eval_every=5",
        "train.save_every=5",
        "train.log_every=5",
        "train.zero_stage=2",
        "cluster.cpus_per_worker=1",
    ]
    project = load_config("tiny", overrides)

    torch.manual_seed(project.train.seed)
    untrained = project.model.build()
    eval_set = PatchBatches(load_split(tmp_path / "corpus", "eval"), Patchilizer(patch_length=64), 0)
    before = evaluate(untrained, eval_set.eval_batches(2), torch.device("cpu"))["eval/loss"]

    first = run_sft(project)
    assert first.summary["step"] == 15
    after = evaluate(load_model(str(first.model_dir)), eval_set.eval_batches(2), torch.device("cpu"))["eval/loss"]
    assert after < before - 0.5
    assert abs(after - first.summary["eval/loss"]) < 1e-3  # the exported model is the trained one

    # resume: a longer run continues from the step-15 checkpoint in the same MLflow run
    longer = load_config("tiny", overrides + ["train.max_steps=20"])
    second = run_sft(longer)
    assert second.summary["step"] == 20 and second.run_id == first.run_id
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step*")) == ["step15", "step20"]

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    history = client.get_metric_history(first.run_id, "train/loss")
    assert [m.step for m in history] == [5, 10, 15, 20]
    assert client.get_metric_history(first.run_id, "eval/bpc")
    assert client.get_run(first.run_id).data.params["train.zero_stage"] == "2"
