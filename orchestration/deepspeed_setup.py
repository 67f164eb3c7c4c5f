"""DeepSpeed settings and weight export shared by the SFT and DPO workers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from base import atomic


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


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW over the model's parameters; the learning rate is set per step by the caller's schedule."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))


def set_lr(engine: Any, lr: float) -> None:
    for group in engine.optimizer.param_groups:
        group["lr"] = lr


def export_model(engine: Any, out_dir: Path, is_main: bool) -> None:
    """Write the engine's weights as a ``save_pretrained`` folder (atomically); collective under ZeRO-3."""
    module = engine.module
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # every rank must take part
    else:
        state = module.state_dict()
    if not is_main:
        return
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    atomic.write_dir(out_dir, lambda tmp: module.save_pretrained(tmp, state_dict=state))


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` DeepSpeed checkpoint tags (``step<N>`` folders)."""
    tags = sorted((p for p in ckpt_dir.glob("step*") if p.is_dir()), key=lambda p: int(p.name[4:]))
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
