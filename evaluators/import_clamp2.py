"""Import the published M3 and CLaMP 2 checkpoints (music side) into an evaluator folder.

Both files are ``{'model': state_dict, ...}`` (plus optimizer state, read with ``weights_only=True``).
M3 gives the char decoder (``decoder.base.*``); CLaMP 2 gives the contrastively trained music encoder
(``symbolic_model.*``) and its projection (``symbolic_proj.*``). CLaMP 2's text side is XLM-R, which we do
not ship: its weights are skipped and our small text encoder stays untrained, which the CLaMP score
(music features only) does not use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from base import atomic
from base.checkpoints import CheckpointError, read_state_dict  # noqa: F401 (re-exported)
from evaluators.model import ClampConfig, ClampModel

log = logging.getLogger(__name__)

M3_PREFIXES = {
    "encoder.patch_embedding.": "music_encoder.patch_embedding.",
    "encoder.base.": "music_encoder.base.",
    "decoder.base.": "music_decoder.base.",
}
CLAMP2_PREFIXES = {
    "symbolic_model.patch_embedding.": "music_encoder.patch_embedding.",
    "symbolic_model.base.": "music_encoder.base.",
    "symbolic_proj.": "music_proj.",
}
# Parts of the checkpoints we do not use: BERT's pooler, buffers, CLaMP 2's XLM-R text side.
IGNORED_PARTS = (".pooler.", "embeddings.position_ids", ".attn.bias", ".attn.masked_bias")
IGNORED_PREFIXES = ("text_model.", "text_proj.", "logit_scale")


def map_names(state: dict[str, torch.Tensor], prefixes: dict[str, str], source: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        if any(p in name for p in IGNORED_PARTS) or name.startswith(IGNORED_PREFIXES):
            continue
        for old, new in prefixes.items():
            if name.startswith(old):
                out[new + name[len(old) :]] = tensor
                break
        else:
            raise CheckpointError(f"{source}: unexpected parameter {name!r} (not an M3 / CLaMP 2 music-side name)")
    return out


def infer_config(state: dict[str, torch.Tensor]) -> ClampConfig:
    """Sizes read off the CLaMP 2 checkpoint's shapes (so a differently sized checkpoint also loads)."""
    embed = state["symbolic_model.patch_embedding.weight"]
    hidden, flat = embed.shape
    layers = len({k.split(".")[4] for k in state if k.startswith("symbolic_model.base.encoder.layer.")})
    proj = state["symbolic_proj.weight"].shape[0]
    positions = state["symbolic_model.base.embeddings.position_embeddings.weight"].shape[0]
    return ClampConfig(
        hidden_size=hidden,
        num_layers=layers,
        projection_size=proj,
        patch_size=flat // 128,
        patch_length=positions,
        text_hidden_size=hidden,
        dropout=0.0,
    )


def convert(m3: dict[str, torch.Tensor], clamp2: dict[str, torch.Tensor]) -> ClampModel:
    """Our model with the music side of CLaMP 2 (encoder, projection) and M3 (char decoder)."""
    for key in ("symbolic_model.patch_embedding.weight", "symbolic_proj.weight"):
        if key not in clamp2:
            raise CheckpointError(f"CLaMP 2 checkpoint: missing {key!r}")
    config = infer_config(clamp2)
    decoder_layers = {k.split(".")[4] for k in m3 if k.startswith("decoder.base.transformer.h.")}
    config.decoder_layers = max(1, len(decoder_layers))
    model = ClampModel(config)
    mapped = map_names({k: v for k, v in m3.items() if k.startswith("decoder.")}, M3_PREFIXES, "M3 checkpoint")
    mapped.update(map_names(clamp2, CLAMP2_PREFIXES, "CLaMP 2 checkpoint"))
    own = model.state_dict()
    music = {
        k
        for k in own
        if k.startswith(("music_encoder.", "music_decoder.", "music_proj.")) and not any(p in k for p in IGNORED_PARTS)
    }
    missing = sorted(music - set(mapped) - {"music_decoder.base.lm_head.weight"})  # lm_head is tied to wte
    extra = sorted(set(mapped) - set(own))
    if missing:
        raise CheckpointError(f"missing parameters: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if extra:
        raise CheckpointError(f"unexpected parameters: {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else ""))
    for name, tensor in mapped.items():
        if own[name].shape != tensor.shape:
            raise CheckpointError(
                f"{name}: shape {tuple(tensor.shape)} in the checkpoint, {tuple(own[name].shape)} expected"
            )
    model.load_state_dict(mapped, strict=False)
    return model


def import_clamp2(m3_path: str | Path, clamp2_path: str | Path, out_dir: str | Path) -> Path:
    """Write ``OUT_DIR/model`` (safetensors); index it on a corpus with ``clampdpo evaluator index``."""
    model = convert(read_state_dict(m3_path), read_state_dict(clamp2_path))
    path = atomic.write_dir(Path(out_dir) / "model", model.save_pretrained)
    log.info(
        "imported CLaMP 2 music side (%d layers, hidden %d) into %s",
        model.config.num_layers,
        model.config.hidden_size,
        path,
    )
    return path
