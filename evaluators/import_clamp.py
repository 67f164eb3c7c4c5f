"""Import published CLaMP 2, CLaMP 3 and M3 checkpoints (music side) into an evaluator folder.

Each file is ``{'model': state_dict, 'epoch', 'min_eval_loss', ...}``, read with ``weights_only=True``. The
family is told by the parameter names (sanderwood/clamp2 and clamp3, ``code/utils.py``):

    CLaMP 2   music_model.{patch_embedding,base}.*  music_proj.*      (+ text_model.* XLM-R, text_proj.*)
    CLaMP 3   symbolic_model.{patch_embedding,base}.*  symbolic_proj.*  (+ text, audio_model.*, audio_proj.*)
    M3        encoder.{patch_embedding,base}.*  decoder.base.*     (masked-patch pre-training only)

The music encoder and its projection give the CLaMP score. The text side (XLM-R) and CLaMP 3's audio side
are not imported: the score does not use them and our small text encoder cannot hold XLM-R. M3's char
decoder is taken from an M3 file when one is given (it only matters for further masked-patch training). The
sizes are read off the checkpoint's shapes; every name and shape is then checked against a model built at
those sizes, and a file of another family is refused with the family it looks like.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from base import atomic
from base.checkpoints import CheckpointError, read_checkpoint
from evaluators.model import ClampConfig, ClampModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    name: str
    encoder: str  # prefix of the M3 patch encoder (patch_embedding + base)
    projection: str | None  # prefix of the music projection
    ignored: tuple[str, ...]  # prefixes of parts we do not import
    preprocess: str  # how its own feature extraction prepares a text (m3_patchilizer.FAMILIES)


FAMILIES = {
    "clamp2": Family("CLaMP 2", "music_model.", "music_proj.", ("text_model.", "text_proj."), "clamp2"),
    "clamp3": Family(
        "CLaMP 3",
        "symbolic_model.",
        "symbolic_proj.",
        ("text_model.", "text_proj.", "audio_model.", "audio_proj."),
        "clamp3",
    ),
    "m3": Family("M3", "encoder.", None, ("decoder.",), "clamp2"),
}
# Buffers some transformers versions write into state dicts; not parameters.
_BUFFERS = re.compile(r"(embeddings\.position_ids|embeddings\.token_type_ids|\.attn\.bias|\.attn\.masked_bias)$")


def detect_family(state: dict[str, torch.Tensor], source: str) -> str:
    """The family of a state dict by its names; a file of no CLaMP family is refused, naming what it is."""
    keys = list(state)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if has("music_model."):
        return "clamp2"
    if has("symbolic_model."):
        return "clamp3"
    if has("encoder.patch_embedding.") and has("decoder.base."):
        return "m3"
    if has("patch_level_decoder."):
        raise CheckpointError(
            f"{source}: a NotaGen decoder checkpoint (patch_level_decoder.*), not an evaluator; "
            "import it with `clampdpo model import-notagen`"
        )
    if has("model.patch_embedding.") or has("music_encoder."):
        raise CheckpointError(
            f"{source}: a clampdpo model's weights, not a published checkpoint; use its folder "
            "directly (evaluator_from) or `clampdpo evaluator index`"
        )
    sample = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
    raise CheckpointError(f"{source}: not a CLaMP 2, CLaMP 3 or M3 checkpoint (parameters {sample})")


def clamp3_variant(path: str | Path) -> str:
    """CLaMP 3's published variants by file name: C2 (symbolic music) or SAAS (audio); '' when unknown."""
    name = Path(path).name.lower()
    return "C2" if "_c2_" in name else ("SAAS" if "_saas_" in name else "")


def infer_config(state: dict[str, torch.Tensor], family: Family, preprocess: str) -> ClampConfig:
    """Sizes read off the checkpoint's shapes (a differently sized checkpoint loads too)."""
    enc = family.encoder

    def shape(name: str) -> tuple[int, ...]:
        if name not in state:
            raise CheckpointError(f"{family.name} checkpoint: missing {name!r}")
        return tuple(state[name].shape)

    hidden, flat = shape(f"{enc}patch_embedding.weight")
    if flat % 128:
        raise CheckpointError(f"{family.name} checkpoint: patch embedding of width {flat} is not patch size × 128")
    layers = {k[len(enc) :].split(".")[3] for k in state if k.startswith(f"{enc}base.encoder.layer.")}
    positions = shape(f"{enc}base.embeddings.position_embeddings.weight")[0]
    projection = shape(f"{family.projection}weight")[0] if family.projection else hidden
    return ClampConfig(
        hidden_size=hidden,
        num_layers=len(layers),
        projection_size=projection,
        patch_size=flat // 128,
        patch_length=positions,
        text_hidden_size=hidden,
        dropout=0.0,
        preprocess=preprocess,
    )


def _mapped(
    state: dict[str, torch.Tensor], prefixes: dict[str, str], ignored: tuple[str, ...], source: str
) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        if name.startswith(ignored) or _BUFFERS.search(name) or ".pooler." in name:
            continue  # parts the CLaMP score does not use (text / audio side, BERT's pooler, buffers)
        for old, new in prefixes.items():
            if name.startswith(old):
                out[new + name[len(old) :]] = tensor
                break
        else:
            raise CheckpointError(f"{source}: unexpected parameter {name!r}")
    return out


def convert(
    state: dict[str, torch.Tensor],
    family_key: str,
    source: str,
    m3: dict[str, torch.Tensor] | None = None,
    preprocess: str | None = None,
) -> ClampModel:
    """Our evaluator model holding the checkpoint's music side (and M3's char decoder when given)."""
    family = FAMILIES[family_key]
    config = infer_config(state, family, preprocess or family.preprocess)
    decoder = m3 if m3 is not None else (state if family_key == "m3" else None)
    if decoder is not None:
        config.decoder_layers = max(
            1, len({k.split(".")[4] for k in decoder if k.startswith("decoder.base.transformer.h.")})
        )
    model = ClampModel(config)
    prefixes = {
        f"{family.encoder}patch_embedding.": "music_encoder.patch_embedding.",
        f"{family.encoder}base.": "music_encoder.base.",
    }
    if family.projection:
        prefixes[family.projection] = "music_proj."
    mapped = _mapped(state, prefixes, family.ignored, source)
    if decoder is not None:
        mapped.update(
            _mapped(
                {k: v for k, v in decoder.items() if k.startswith("decoder.")},
                {"decoder.base.": "music_decoder.base."},
                (),
                "M3 checkpoint",
            )
        )
    own = model.state_dict()
    wanted = {k for k in own if k.startswith("music_encoder.") and not _BUFFERS.search(k)}
    if family.projection:
        wanted |= {k for k in own if k.startswith("music_proj.")}
    if decoder is not None:  # the LM head is tied to the char embedding: saved once
        wanted |= {k for k in own if k.startswith("music_decoder.") and not _BUFFERS.search(k)} - {
            "music_decoder.base.lm_head.weight"
        }
    missing = sorted(wanted - set(mapped))
    extra = sorted(set(mapped) - set(own))
    if missing:
        raise CheckpointError(
            f"{source}: missing parameters: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        )
    if extra:
        raise CheckpointError(
            f"{source}: unexpected parameters: {', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else "")
        )
    for name, tensor in mapped.items():
        if own[name].shape != tensor.shape:
            raise CheckpointError(
                f"{source}: {name}: shape {tuple(tensor.shape)} in the checkpoint, {tuple(own[name].shape)} expected"
            )
    model.load_state_dict(mapped, strict=False)
    return model.eval()


@dataclass
class Imported:
    out_dir: Path
    family: str
    variant: str
    preprocess: str
    epoch: int | None
    min_eval_loss: float | None
    layers: int
    hidden_size: int


def import_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    family: str = "auto",
    m3: str | Path | None = None,
    preprocess: str | None = None,
) -> Imported:
    """Write ``OUT_DIR/model`` (safetensors) and ``OUT_DIR/import.json``; then index it on a corpus with
    ``clampdpo evaluator index`` to score against that corpus's centroids."""
    state, meta = read_checkpoint(checkpoint)
    found = detect_family(state, str(checkpoint))
    if family not in ("auto", found):
        raise CheckpointError(
            f"{checkpoint}: looks like a {FAMILIES[found].name} checkpoint, not {FAMILIES[family].name}"
        )
    m3_state = None
    if m3 is not None:
        m3_state, _ = read_checkpoint(m3)
        if detect_family(m3_state, str(m3)) != "m3":
            raise CheckpointError(f"{m3}: not an M3 checkpoint (encoder.* and decoder.*)")
    model = convert(state, found, str(checkpoint), m3_state, preprocess)
    variant = clamp3_variant(checkpoint) if found == "clamp3" else ""
    if found == "clamp3" and variant != "C2":
        log.warning(
            "%s: CLaMP 3 %s; for symbolic music CLaMP 3's authors recommend the C2 variant",
            checkpoint,
            variant or "(variant unknown from the file name)",
        )
    if found == "m3":
        log.warning(
            "%s: an M3 checkpoint has no projection: music_proj stays untrained, so train the evaluator "
            "(evaluator.init_from) before scoring with it",
            checkpoint,
        )
    out = Path(out_dir)
    atomic.write_dir(out / "model", model.save_pretrained)
    result = Imported(
        out,
        found,
        variant,
        model.config.preprocess,
        meta.get("epoch"),
        meta.get("min_eval_loss"),
        model.config.num_layers,
        model.config.hidden_size,
    )
    atomic.write_json(
        out / "import.json",
        {**asdict(result), "out_dir": str(out), "source": str(Path(checkpoint)), "m3": str(m3) if m3 else None},
    )
    log.info(
        "imported %s (%s%s, %d layers, hidden %d, preprocessing %s) into %s",
        checkpoint,
        FAMILIES[found].name,
        f" {variant}" if variant else "",
        result.layers,
        result.hidden_size,
        result.preprocess,
        out,
    )
    return result
