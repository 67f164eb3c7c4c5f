"""One DPO round inside each Ray Train worker: TRL's DPOTrainer (our DPOP subclass) on DeepSpeed ZeRO.

Rank 0 writes the round's policy (``save_pretrained``) and the training summary; every step's TRL
metrics go to the round's MLflow child run through a callback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

from orchestration.workers import WorkerContext

log = logging.getLogger(__name__)


def dpo_deepspeed_config(stage: int, bf16: bool) -> dict:
    """DeepSpeed config for HF's Trainer: batch sizes and optimizer come from the Trainer ("auto")."""
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }


def dpo_worker(loop_config: dict[str, Any]) -> None:
    """The body of each Ray Train worker; ``loop_config["job"]`` is the driver's ``DPOJob``."""
    import datasets
    import ray.train
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    from base import atomic
    from base.tracking import MetricLogger
    from models.config import load_model
    from models.tokenizer import NotaGenTokenizer
    from orchestration.deepspeed_setup import use_bf16
    from pipelines.dpo.dataset import read_pairs
    from pipelines.dpo.trainer import NotaGenDPOTrainer, training_args

    job = loop_config["job"]
    ctx = WorkerContext.current()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    cfg = job.dpo
    out = Path(job.out_dir)
    bf16 = use_bf16(job.precision, ctx.device)

    torch.manual_seed(cfg.seed + job.round)
    policy = load_model(job.policy_dir, dropout=cfg.dropout)
    ref = load_model(job.reference_dir, dropout=0.0) if job.reference_dir else None
    tokenizer = NotaGenTokenizer(patch_size=policy.config.patch_size)
    rows = [
        {"prompt": p.prompt_text, "chosen": p.chosen_text, "rejected": p.rejected_text}
        for p in read_pairs(job.pairs_file)
    ]
    steps_per_epoch = math.ceil(len(rows) / (cfg.batch_pairs * ctx.world * cfg.grad_accum))
    args = training_args(
        cfg,
        str(out / "trainer"),
        policy.config.patch_length * policy.config.patch_size,
        cfg.seed + job.round,
        bf16=bf16,
        use_cpu=ctx.device.type == "cpu",
        deepspeed=dpo_deepspeed_config(cfg.zero_stage, bf16),
        progress=ctx.main,
    )
    tracker = MetricLogger(job.tracking_uri, job.run_id) if ctx.main else None

    class ToMLflow(TrainerCallback):
        def on_log(self, _args: Any, state: Any, _control: Any, logs: dict | None = None, **_: Any) -> None:
            if tracker and logs:
                tracker.log({k: v for k, v in logs.items() if isinstance(v, (int, float))}, state.global_step)

    # datasets fingerprints TRL's map functions with dill, whose bytecode listing leaks to a Ray worker's
    # stdout (it only means to capture it); keep it out of the driver's console
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = NotaGenDPOTrainer(
            model=policy,
            ref_model=ref,
            args=args,
            dpop_lambda=cfg.dpop_lambda,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[ToMLflow()],
        )
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    history = [h for h in trainer.state.log_history if "rewards/margins" in h]
    last = history[-1] if history else {}
    first = history[0] if history else {}

    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # collective under ZeRO-3
    if ctx.main:
        state = {k: v.detach().float().cpu() for k, v in state.items()}
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        atomic.write_dir(out / "policy", lambda tmp: model.save_pretrained(tmp, state_dict=state))
        summary = {
            "pairs": len(rows),
            "steps": trainer.state.global_step,
            "steps_per_epoch": steps_per_epoch,
            "train_loss": result.training_loss,
            "seconds": seconds,
            "world_size": ctx.world,
            "device": str(ctx.device),
            "bf16": bf16,
            **{f"first/{k}": v for k, v in first.items() if isinstance(v, (int, float))},
            **{k: v for k, v in last.items() if isinstance(v, (int, float))},
        }
        atomic.write_json(out / "dpo_summary.json", summary)
    ray.train.report({"steps": trainer.state.global_step})
