"""Import of CLaMP 2, CLaMP 3 and M3 checkpoints, built here with upstream's exact parameter names and shapes
(read off sanderwood/clamp2 and clamp3 ``code/utils.py``: CLaMP2Model, CLaMP3Model, M3Model) at a small size,
and the features of an imported model against CLaMP 2's extraction written out in this test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from evaluators.features import FeatureExtractor
from evaluators.import_clamp import CheckpointError, import_checkpoint
from evaluators.m3_patchilizer import M3Patchilizer
from evaluators.model import ClampModel
from tests.conftest import CLAMP_LAYOUT, clamp_layout, m3_layout

H, LAYERS, PROJ, LENGTH = CLAMP_LAYOUT["hidden"], CLAMP_LAYOUT["layers"], CLAMP_LAYOUT["projection"], 512
PIECE = "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n[V:1]G2 A2 B2 c2|[V:2]G,8|\n[V:1]d8|][V:2]D,8|]\n"
# 2 × 300 bars + 5 header lines + 2 special patches = 607 patches: two windows, the second overlapping
LONG = "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n" + "".join(
    f"[V:1]{'GABcdefg'[k % 8]}4 {'GABcdefg'[(k * 3) % 8]}4|[V:2]{'CDEFGAB'[k % 7]},8|\n" for k in range(300)
)


def save(module: nn.Module, path, **extra):
    torch.save({"model": module.state_dict(), "epoch": 7, "min_eval_loss": 0.25, **extra}, path)
    return path


def clamp2_feature(encoder: nn.Module, proj: nn.Linear, patches: list[list[int]]) -> np.ndarray:
    """CLaMP 2's global feature written out: 512-patch windows (the last one the final 512 patches), each
    one-hot → Linear → BERT, averaged over its patches and projected; windows weighted by length."""
    x = torch.tensor(patches)
    starts = list(range(0, len(x), LENGTH))
    windows = [x[s : s + LENGTH] for s in starts]
    windows[-1] = x[-LENGTH:]
    weights = [LENGTH] * (len(x) // LENGTH) + ([len(x) % LENGTH] if len(x) % LENGTH else [])
    feats = []
    with torch.no_grad():
        for w in windows:
            one_hot = torch.nn.functional.one_hot(w, 128).reshape(1, len(w), -1).float()
            hidden = encoder.base(inputs_embeds=encoder.patch_embedding(one_hot)).last_hidden_state
            feats.append(proj(hidden.mean(1))[0])
    total = sum(weights)
    return sum(f * (n / total) for f, n in zip(feats, weights)).numpy()


@pytest.mark.parametrize("family,music,extra,name", [
    ("clamp2", "music", (), "weights_clamp2_h_size_768_lr_5e-05_m3_True.pth"),
    ("clamp3", "symbolic", ("audio",), "weights_clamp3_c2_h_size_768_p_length_512.pth"),
])  # fmt: skip
def test_imported_features_equal_the_extraction_written_out(tmp_path, family, music, extra, name):
    layout = clamp_layout(music, extra)
    path = save(layout, tmp_path / name)
    result = import_checkpoint(path, tmp_path / "evaluator")
    assert (result.family, result.epoch, result.min_eval_loss) == (family, 7, 0.25)
    assert result.variant == ("C2" if family == "clamp3" else "")
    assert result.preprocess == family  # CLaMP 3 drops L:1/8 before patching, CLaMP 2 does not
    assert json.loads((tmp_path / "evaluator" / "import.json").read_text())["family"] == family
    model = ClampModel.from_pretrained(tmp_path / "evaluator" / "model").eval()
    assert (
        model.config.hidden_size,
        model.config.num_layers,
        model.config.projection_size,
        model.config.patch_length,
    ) == (H, LAYERS, PROJ, LENGTH)
    encoder, proj = getattr(layout, f"{music}_model"), getattr(layout, f"{music}_proj")
    got = FeatureExtractor(model, "cpu").extract([PIECE, LONG])
    for text, ours in zip([PIECE, LONG], got):
        patches = M3Patchilizer(family=family).encode(text)
        want = clamp2_feature(encoder, proj, patches)
        cos = float(ours @ want / np.linalg.norm(ours) / np.linalg.norm(want))
        assert cos > 0.99999 and np.allclose(ours, want, atol=1e-4)
    assert len(M3Patchilizer().encode(LONG)) == 607


def test_m3_gives_the_encoder_and_char_decoder(tmp_path):
    m3 = m3_layout()
    result = import_checkpoint(save(m3, tmp_path / "weights_m3_p_size_64.pth"), tmp_path / "ev")
    assert result.family == "m3"
    model = ClampModel.from_pretrained(tmp_path / "ev" / "model")
    assert torch.equal(model.music_encoder.patch_embedding.weight, m3.encoder.patch_embedding.weight)
    assert torch.equal(
        model.music_decoder.base.transformer.h[0].mlp.c_fc.weight, m3.decoder.base.transformer.h[0].mlp.c_fc.weight
    )
    # CLaMP 2 with M3's char decoder beside it (for further masked-patch training)
    clamp2 = save(clamp_layout("music", ()), tmp_path / "weights_clamp2.pth")
    import_checkpoint(clamp2, tmp_path / "both", m3=tmp_path / "weights_m3_p_size_64.pth")
    both = ClampModel.from_pretrained(tmp_path / "both" / "model")
    assert torch.equal(both.music_decoder.base.transformer.wte.weight, m3.decoder.base.transformer.wte.weight)


def test_a_wrong_file_is_refused_naming_what_it_looks_like(tmp_path):
    clamp2 = save(clamp_layout("music", ()), tmp_path / "clamp2.pth")
    with pytest.raises(CheckpointError, match="looks like a CLaMP 2 checkpoint, not CLaMP 3"):
        import_checkpoint(clamp2, tmp_path / "x", family="clamp3")
    with pytest.raises(CheckpointError, match="not an M3 checkpoint"):
        import_checkpoint(clamp2, tmp_path / "x", m3=clamp2)
    notagen = nn.Module()
    notagen.patch_level_decoder = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="NotaGen decoder checkpoint.*model import-notagen"):
        import_checkpoint(save(notagen, tmp_path / "notagen.pth"), tmp_path / "x")
    other = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"not a CLaMP 2, CLaMP 3 or M3 checkpoint \(parameters weight, bias\)"):
        import_checkpoint(save(other, tmp_path / "other.pth"), tmp_path / "x")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a checkpoint of plain tensors"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing written for a refused file


def test_missing_extra_and_misshaped_names_are_named(tmp_path):
    state = clamp_layout("music", ()).state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("music_model.base.encoder.layer.1.output.dense")}
    torch.save({"model": broken}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing parameters: music_encoder.base.encoder.layer.1.output.dense"):
        import_checkpoint(tmp_path / "missing.pth", tmp_path / "out")
    torch.save({"model": {**state, "music_model.extra_head.weight": torch.zeros(2)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="music_model.extra_head.weight"):
        import_checkpoint(tmp_path / "extra.pth", tmp_path / "out")
    bad = dict(state)
    bad["music_proj.bias"] = torch.zeros(PROJ + 1)
    torch.save({"model": bad}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="music_proj.bias: shape"):
        import_checkpoint(tmp_path / "shape.pth", tmp_path / "out")
