"""The SFT training loop that runs inside each Ray Train worker, on a DeepSpeed engine.

Rank 0 logs to MLflow, shows the progress bar, and writes the final model; every rank takes part in
checkpoints (DeepSpeed's are collective) and evaluation (eval batches are sharded and summed).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from base.integrity import seal
from orchestration.workers import WorkerContext

log = logging.getLogger(__name__)


def sft_worker(loop_config: dict[str, Any]) -> None:
    """The body of each Ray Train worker; ``loop_config["job"]`` is the driver's ``SFTJob``."""
    import ray.train
    from tqdm import tqdm

    from base import atomic
    from base.tracking import MetricLogger
    from models.patchilizer import Patchilizer
    from orchestration.deepspeed_setup import (
        adamw,
        deepspeed_config,
        export_model,
        initialize,
        prune_checkpoints,
        set_lr,
        trusted_checkpoint,
        use_bf16,
    )
    from pipelines.train.sft import PatchBatches, eval_metrics, eval_sums, load_split, lr_at, scored_chars

    job = loop_config["job"]
    ctx = WorkerContext.current()
    cfg, cluster = job.project.train, job.project.cluster
    rank, world, device, main = ctx.rank, ctx.world, ctx.device, ctx.main
    out = Path(job.out_dir)
    ckpt_dir = out / "checkpoints"

    def evaluate() -> dict[str, float]:
        engine.module.eval()
        total, n = eval_sums(lambda p, m: engine(patches=p, patch_mask=m).loss, eval_batches[rank::world], device)
        engine.module.train()
        return eval_metrics(*ctx.all_reduce([total, float(n)]))

    torch.manual_seed(cfg.seed)
    model = job.project.model.build()
    patchilizer = Patchilizer(patch_size=model.config.patch_size, patch_length=model.config.patch_length)
    train = PatchBatches(load_split(job.corpus, "train"), patchilizer, cfg.seed)
    eval_set = PatchBatches(load_split(job.corpus, "eval"), patchilizer, cfg.seed)
    eval_batches = list(eval_set.eval_batches(cfg.batch_pieces, cfg.eval_pieces))

    bf16 = use_bf16(cluster.precision, device)
    ds_config = deepspeed_config(cfg.zero_stage, cfg.batch_pieces, cfg.grad_accum, world, cfg.grad_clip, bf16)
    engine = initialize(model, adamw(model, cfg.lr, cfg.weight_decay), ds_config)

    step, elapsed = 0, 0.0
    tag = trusted_checkpoint(ckpt_dir) if cfg.resume else None
    if tag is not None:
        _, client_state = engine.load_checkpoint(str(ckpt_dir), tag=tag)
        step, elapsed = int(client_state["step"]), float(client_state.get("elapsed", 0.0))
        if main:
            log.info("resumed from %s at step %d", ckpt_dir / tag, step)

    tracker = MetricLogger(job.tracking_uri, job.run_id if main else None)  # a no-op on the other ranks
    bar = tqdm(total=cfg.max_steps, initial=step, desc="sft", unit="step", disable=not main, mininterval=2)
    budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    metrics: dict[str, float] = {}
    window_loss, window_chars, window_start = 0.0, 0, time.perf_counter()
    start = time.perf_counter() - elapsed
    engine.train()
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        set_lr(engine, lr)
        for micro in range(cfg.grad_accum):
            patches, mask = train.micro_batch(step, micro, rank, world, cfg.batch_pieces, cfg.grad_accum)
            out_ = engine(patches=patches.to(device), patch_mask=mask.to(device))
            engine.backward(out_.loss)
            engine.step()
            chars = int(scored_chars(patches, mask).numel())
            window_loss += float(out_.loss.detach()) * chars
            window_chars += chars
        step += 1
        bar.update(1)
        elapsed = time.perf_counter() - start
        out_of_time = ctx.all_reduce([float(elapsed >= budget)])[0] > 0
        last = step == cfg.max_steps or out_of_time
        if step % cfg.log_every == 0 or last:
            loss_sum, char_sum = ctx.all_reduce([window_loss, float(window_chars)])
            seconds = time.perf_counter() - window_start
            metrics = {
                "train/loss": loss_sum / max(1.0, char_sum),
                "train/lr": lr,
                "train/chars_per_sec": char_sum / max(seconds, 1e-9),
                "train/elapsed_s": elapsed,
            }
            metrics["train/bpc"] = metrics["train/loss"] / math.log(2)
            if main:
                tracker.log(metrics, step)
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}")
            window_loss, window_chars, window_start = 0.0, 0, time.perf_counter()
        if step % cfg.eval_every == 0 or last:
            ev = evaluate()
            metrics.update(ev)
            if main:
                tracker.log(ev, step)
                log.info("step %d: eval loss %.4f (%.3f bits/char)", step, ev["eval/loss"], ev["eval/bpc"])
        if step % cfg.save_every == 0 or last:
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{step}", client_state={"step": step, "elapsed": elapsed})
            if main:  # DeepSpeed's save ends with a barrier: every rank's shard is on disk when this seals them
                seal(ckpt_dir / f"step{step}")
                prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)
        if out_of_time:
            if main:
                log.warning(
                    "train.max_minutes (%.1f min) cut SFT at step %d of %d: this run's result now depends "
                    "on the machine's speed",
                    cfg.max_minutes,
                    step,
                    cfg.max_steps,
                )
            break
    bar.close()
    export_model(engine, out / "model", main)
    if main:
        summary = {
            "step": step,
            "elapsed_s": elapsed,
            "world_size": world,
            "device": str(device),
            "bf16": bf16,
            **metrics,
        }
        atomic.write_json(out / "sft_summary.json", summary)
    ray.train.report({"step": step, **{k.replace("/", "_"): v for k, v in metrics.items()}})
