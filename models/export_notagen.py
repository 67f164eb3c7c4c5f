"""Export a model back to NotaGen's own checkpoint format, for NotaGen's inference script and demo.

The inverse of ``import_notagen``: ``{'model': state_dict}`` with NotaGen's parameter names (its
``NotaGenLMHeadModel``: ``patch_level_decoder.*`` and ``char_level_decoder.base.*``), written with
``torch.save``. NotaGen's class fixes some things our config leaves open (16-character patches, 128
characters, heads of 64 dimensions, tied character embeddings): a model that differs is refused, naming the
difference, since NotaGen's code would build another network than the one the weights belong to.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from base import atomic
from base.errors import CheckpointError
from models.config import load_model
from models.import_notagen import notagen_name
from models.notagen import NotaGenConfig
from models.sizes import SIZES

# What NotaGen's class builds whatever its config.py says (its PATCH_SIZE is 16, its vocabulary 128 characters)
NOTAGEN_PATCH_SIZE = 16
NOTAGEN_VOCAB = 128
NOTAGEN_HEAD_DIM = 64


@dataclass(frozen=True)
class Exported:
    path: Path
    size: str  # NotaGen's name for the size ('small', ...), or 'custom'
    config_py: dict[str, int]  # the values NotaGen's config.py needs to build this network
    tensors: int


def notagen_differences(config: NotaGenConfig) -> list[str]:
    """What in ``config`` NotaGen's class cannot express (empty when it can)."""
    out = []
    if config.patch_size != NOTAGEN_PATCH_SIZE:
        out.append(f"patch_size {config.patch_size} (NotaGen: {NOTAGEN_PATCH_SIZE})")
    if config.vocab_size != NOTAGEN_VOCAB:
        out.append(f"vocab_size {config.vocab_size} (NotaGen: {NOTAGEN_VOCAB})")
    if config.num_attention_heads * NOTAGEN_HEAD_DIM != config.hidden_size:
        out.append(
            f"{config.num_attention_heads} attention heads for hidden size {config.hidden_size} (NotaGen: "
            f"hidden size / {NOTAGEN_HEAD_DIM} = {config.hidden_size / NOTAGEN_HEAD_DIM:g})"
        )
    if not getattr(config, "tie_word_embeddings", True):
        out.append("untied character embeddings (NotaGen ties its char decoder's lm_head to its embeddings)")
    return out


def size_name(config: NotaGenConfig) -> str:
    """NotaGen's (or our) name of a size with this shape; 'custom' when none has it."""
    shape = {
        "patch_num_layers": config.patch_num_layers,
        "char_num_layers": config.char_num_layers,
        "hidden_size": config.hidden_size,
        "patch_length": config.patch_length,
    }
    named = [name for name, s in SIZES.items() if s == shape]
    return named[0] if named else "custom"


def config_py(config: NotaGenConfig) -> dict[str, int]:
    """The values of NotaGen's ``config.py`` (inference) that build a network of this shape."""
    return {
        "PATCH_SIZE": config.patch_size,
        "PATCH_LENGTH": config.patch_length,
        "PATCH_NUM_LAYERS": config.patch_num_layers,
        "CHAR_NUM_LAYERS": config.char_num_layers,
        "HIDDEN_SIZE": config.hidden_size,
    }


def notagen_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameter names → NotaGen's (every tensor a contiguous CPU copy, as ``torch.save`` keeps it)."""
    return {notagen_name(name): t.detach().to("cpu").contiguous().clone() for name, t in state.items()}


def export_notagen(model_dir: str | Path, out: str | Path) -> Exported:
    """Write the model of ``model_dir`` as a NotaGen checkpoint at ``out`` (atomically)."""
    model = load_model(model_dir)
    problems = notagen_differences(model.config)
    if problems:
        raise CheckpointError(f"{model_dir}: NotaGen's class cannot express this model: {'; '.join(problems)}")
    state = notagen_state_dict(model.state_dict())
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    atomic.write_bytes(out, buffer.getvalue())
    return Exported(Path(out), size_name(model.config), config_py(model.config), len(state))
