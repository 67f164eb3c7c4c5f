"""Reading published PyTorch checkpoints (NotaGen, M3, CLaMP 2 / 3) safely: ``weights_only``, on the CPU."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from base.errors import CheckpointError

__all__ = ["CheckpointError", "read_checkpoint"]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict inside a ``{'model': state_dict, ...}`` file (a bare state dict is accepted too), and the
    file's plain metadata (``epoch``, ``min_eval_loss``, ... : numbers and strings only)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text is a paragraph of advice to unpickle anyway; we never do
        raise CheckpointError(
            f"{path}: not a checkpoint of plain tensors (it is not a torch file, or it holds pickled objects, "
            "which are never loaded)"
        ) from None
    except Exception as err:  # torch's messages run over many lines; the first says what went wrong
        first = (str(err).strip().splitlines() or [""])[0] or "the file is empty or cut short"
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(err).__name__}: {first})") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected {{'model': state_dict}} of tensors")
    meta = (
        {k: v for k, v in obj.items() if k != "model" and isinstance(v, (int, float, str))} if obj is not state else {}
    )
    # checkpoints written from a DistributedDataParallel wrapper carry a 'module.' prefix
    return {k.removeprefix("module."): v for k, v in state.items()}, meta


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (``read_checkpoint`` without the metadata)."""
    return read_checkpoint(path)[0]
