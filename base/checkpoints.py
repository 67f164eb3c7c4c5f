"""Reading published PyTorch checkpoints (NotaGen, M3, CLaMP 2) safely: ``weights_only``, on the CPU."""

from __future__ import annotations

from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected layout; the message names the file or key."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a ``{'model': state_dict, ...}`` file (a bare state dict is accepted too)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(err).__name__}: {err})") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected {{'model': state_dict}}")
    # checkpoints written from a DistributedDataParallel wrapper carry a 'module.' prefix
    return {k.removeprefix("module."): v for k, v in state.items()}
