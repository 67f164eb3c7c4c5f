"""Import NotaGen's original checkpoints (``{'model': state_dict}`` .pth files) into our format.

NotaGen saves a ``NotaGenLMHeadModel`` whose parameters live under

    patch_level_decoder.patch_embedding.*        → model.patch_embedding.*
    patch_level_decoder.base.*   (GPT2Model)      → model.patch_decoder.*
    char_level_decoder.base.transformer.*         → model.char_decoder.*
    char_level_decoder.base.lm_head.weight        → lm_head.weight (tied to the char embedding)

Every name must map and every shape must match the chosen size; a missing, extra or mis-shaped key
is an error that names it, so a wrong ``--size`` is caught before anything is written.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from base import atomic
from base.checkpoints import CheckpointError, read_state_dict  # noqa: F401 (re-exported)
from models.notagen import NotaGenConfig, NotaGenForCausalLM

log = logging.getLogger(__name__)

PREFIX_MAP = (
    ("patch_level_decoder.patch_embedding.", "model.patch_embedding."),
    ("patch_level_decoder.base.", "model.patch_decoder."),
    ("char_level_decoder.base.transformer.", "model.char_decoder."),
    ("char_level_decoder.base.lm_head.", "lm_head."),
)
# Causal-mask buffers that older transformers versions wrote into GPT-2 state dicts; not parameters.
_MASK_BUFFER = re.compile(r"\.attn\.(bias|masked_bias)$")


def our_name(notagen_name: str) -> str:
    for theirs, ours in PREFIX_MAP:
        if notagen_name.startswith(theirs):
            return ours + notagen_name[len(theirs) :]
    raise CheckpointError(f"extra key {notagen_name!r}: not a NotaGen parameter name")


def notagen_name(our: str) -> str:
    for theirs, ours in PREFIX_MAP:
        if our.startswith(ours):
            return theirs + our[len(ours) :]
    raise KeyError(our)


def convert_state_dict(state: dict[str, torch.Tensor], config: NotaGenConfig) -> dict[str, torch.Tensor]:
    """NotaGen names → ours, with every name and shape checked against a model of ``config``."""
    expected = {k: v.shape for k, v in NotaGenForCausalLM(config).state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if _MASK_BUFFER.search(name):
            continue
        ours = our_name(name)
        if ours not in expected:
            raise CheckpointError(f"extra key {name!r} (→ {ours}): the chosen size has no such parameter")
        if tuple(tensor.shape) != tuple(expected[ours]):
            raise CheckpointError(
                f"shape mismatch for {name!r}: checkpoint {tuple(tensor.shape)}, "
                f"size expects {tuple(expected[ours])} (wrong --size?)"
            )
        converted[ours] = tensor
    tied = "lm_head.weight"
    if tied not in converted and "model.char_decoder.wte.weight" in converted:
        converted[tied] = converted["model.char_decoder.wte.weight"]  # tied weights saved once
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise CheckpointError(
            f"missing key {notagen_name(missing[0])!r} (→ {missing[0]})"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return converted


def import_notagen(checkpoint: str | Path, out_dir: str | Path, size: str = "large", **config_overrides) -> Path:
    """Convert a NotaGen checkpoint to a ``save_pretrained`` folder (written atomically)."""
    config = NotaGenConfig.from_size(size, **config_overrides)
    state = convert_state_dict(read_state_dict(checkpoint), config)
    model = NotaGenForCausalLM(config)
    model.load_state_dict(state, strict=True)
    out_dir = atomic.write_dir(out_dir, model.save_pretrained)
    log.info("imported %s (%s, %d tensors) → %s", checkpoint, size, len(state), out_dir)
    return out_dir
