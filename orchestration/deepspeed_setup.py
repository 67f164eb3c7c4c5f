"""DeepSpeed settings and weight export shared by the SFT and DPO workers."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from base import atomic
from base.integrity import broken_seal

log = logging.getLogger(__name__)


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 on a GPU that supports it when precision is 'auto'; never on CPU (no speed-up there)."""
    if precision == "fp32" or device.type != "cuda":
        return False
    return precision == "bf16" or torch.cuda.is_bf16_supported()


def deepspeed_config(stage: int, micro_batch: int, grad_accum: int, world: int, grad_clip: float, bf16: bool) -> dict:
    """A DeepSpeed config for an engine given its optimizer (``adamw``): no optimizer section, so DeepSpeed
    does not JIT-compile its fused Adam op (a C++ build of 45-95 s on 2 cores, again for every new venv)."""
    return {
        "train_batch_size": micro_batch * grad_accum * world,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }


def initialize(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict) -> Any:
    """``deepspeed.initialize``'s engine, with DeepSpeed's CPU shared-memory all-reduce kernel left unbuilt."""
    import deepspeed

    skip_cpu_inference_kernel()
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def skip_cpu_inference_kernel() -> None:
    """On CPU, DeepSpeed's comm backend JIT-compiles a shared-memory all-reduce kernel when it starts (C++, about
    60 CPU-seconds on 2 cores, and again for every new venv path) that only its inference tensor-parallel layers
    call; training's collectives go through torch.distributed either way. Marking the op unavailable, in the
    table DeepSpeed consults for it, means nothing is compiled. ``tests/orchestration/test_deepspeed_setup.py``
    fails if a DeepSpeed upgrade stops reading that table."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        deepspeed.ops.__compatible_ops__[SHM_KERNEL] = False


SHM_KERNEL = "deepspeed_shm_comm"


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW over the model's parameters; the learning rate is set per step by the caller's schedule."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))


def set_lr(engine: Any, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr


def export_state(engine: Any) -> dict[str, torch.Tensor]:
    """The engine's full weights (ZeRO-3 gathers them: every rank must call this; rank 0 gets them)."""
    if engine.zero_optimization_stage() == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return engine.module.state_dict()


def export_model(engine: Any, out_dir: Path, is_main: bool) -> None:
    """Write the engine's weights as a ``save_pretrained`` folder (atomically); collective under ZeRO-3."""
    state = export_state(engine)
    if not is_main:
        return
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    atomic.write_dir(out_dir, lambda tmp: engine.module.save_pretrained(tmp, state_dict=state))


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` DeepSpeed checkpoint tags (``step<N>`` folders)."""
    tags = sorted((p for p in ckpt_dir.glob("step*") if p.is_dir()), key=lambda p: int(p.name[4:]))
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def trusted_checkpoint(ckpt_dir: Path) -> str | None:
    """The tag of the newest checkpoint to resume from, if DeepSpeed's ``latest`` names one whose seal holds.

    DeepSpeed unpickles its checkpoints, so one that is not exactly what we wrote is never loaded: training
    starts again from its beginning instead (time lost, nothing run that we did not write).
    """
    latest = ckpt_dir / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text(encoding="utf-8", errors="replace").strip()
    folder = ckpt_dir / tag
    problem = (
        "it names no checkpoint folder inside the run"
        if not tag or "/" in tag or tag.startswith(".") or not folder.is_dir()
        else broken_seal(folder)
    )
    if problem:
        log.warning("not resuming from %s: %s; training starts from its beginning", folder, problem)
        return None
    return tag
