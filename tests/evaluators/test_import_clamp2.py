"""Import of state dicts with M3's and CLaMP 2's names and shapes, built here at a small size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

from evaluators.features import FeatureExtractor
from evaluators.import_clamp2 import CheckpointError, import_clamp2
from evaluators.m3_patchilizer import M3Patchilizer
from evaluators.model import ClampModel

H, LAYERS, PROJ, LENGTH = 64, 2, 48, 32
PIECE = "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n[V:1]G2 A2 B2 c2|[V:2]G,8|\n[V:1]d8|][V:2]D,8|]\n"


class PatchEncoderLayout(nn.Module):
    """CLaMP 2's M3PatchEncoder layout: patch_embedding + base (a BertModel with its pooler)."""

    def __init__(self):
        super().__init__()
        self.patch_embedding = nn.Linear(64 * 128, H)
        self.base = BertModel(
            BertConfig(
                vocab_size=1,
                hidden_size=H,
                num_hidden_layers=LAYERS,
                num_attention_heads=H // 64 or 1,
                intermediate_size=4 * H,
                max_position_embeddings=LENGTH,
            )
        )

    def forward(self, patches, mask):
        x = torch.nn.functional.one_hot(patches, 128).reshape(len(patches), -1, 64 * 128).float()
        return self.base(inputs_embeds=self.patch_embedding(x), attention_mask=mask).last_hidden_state


class Clamp2Layout(nn.Module):
    def __init__(self):
        super().__init__()
        self.symbolic_model = PatchEncoderLayout()
        self.symbolic_proj = nn.Linear(H, PROJ)
        self.text_proj = nn.Linear(32, PROJ)  # the XLM-R side (skipped by the importer)

    def feature(self, patches, mask):
        h = self.symbolic_model(patches, mask)
        m = mask[..., None].float()
        return self.symbolic_proj((h * m).sum(1) / m.sum(1))


class M3Layout(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = PatchEncoderLayout()
        self.decoder = nn.Module()
        self.decoder.base = GPT2LMHeadModel(
            GPT2Config(vocab_size=128, n_positions=64, n_embd=H, n_layer=1, n_head=1, n_inner=4 * H)
        )


def save(module: nn.Module, path, extra: dict | None = None):
    torch.save({"model": module.state_dict(), "epoch": 3, "min_eval_loss": 0.5, **(extra or {})}, path)


@pytest.fixture()
def checkpoints(tmp_path):
    torch.manual_seed(0)
    clamp2, m3 = Clamp2Layout().eval(), M3Layout().eval()
    for p in clamp2.parameters():  # non-trivial biases / norms so a wrong mapping shows
        p.data.add_(torch.randn_like(p) * 0.02)
    save(clamp2, tmp_path / "clamp2.pth")
    save(m3, tmp_path / "m3.pth", {"optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}})
    return clamp2, m3, tmp_path


def test_imported_weights_give_clamp2s_features(checkpoints):
    clamp2, m3, tmp = checkpoints
    path = import_clamp2(tmp / "m3.pth", tmp / "clamp2.pth", tmp / "evaluator")
    model = ClampModel.from_pretrained(path).eval()
    assert (
        model.config.hidden_size,
        model.config.num_layers,
        model.config.projection_size,
        model.config.patch_length,
    ) == (H, LAYERS, PROJ, LENGTH)
    patches = torch.tensor([M3Patchilizer().encode(PIECE)])
    mask = torch.ones(patches.shape[:2], dtype=torch.long)
    with torch.no_grad():
        expected = clamp2.feature(patches, mask)[0].numpy()
    got = FeatureExtractor(model, "cpu").extract([PIECE])[0]
    assert np.allclose(got, expected, atol=1e-5)
    assert torch.equal(
        model.music_decoder.base.transformer.h[0].mlp.c_fc.weight, m3.decoder.base.transformer.h[0].mlp.c_fc.weight
    )


def test_missing_extra_and_misshaped_keys_are_named(checkpoints, tmp_path):
    clamp2, _, tmp = checkpoints
    state = clamp2.state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("symbolic_model.base.encoder.layer.1.output.dense")}
    torch.save({"model": broken}, tmp / "missing.pth")
    with pytest.raises(CheckpointError, match="missing parameters: music_encoder.base.encoder.layer.1.output.dense"):
        import_clamp2(tmp / "m3.pth", tmp / "missing.pth", tmp / "out")
    torch.save({"model": {**state, "symbolic_model.extra_head.weight": torch.zeros(2)}}, tmp / "extra.pth")
    with pytest.raises(CheckpointError, match="symbolic_model.extra_head.weight"):
        import_clamp2(tmp / "m3.pth", tmp / "extra.pth", tmp / "out")
    bad = dict(state)
    bad["symbolic_proj.bias"] = torch.zeros(PROJ + 1)
    torch.save({"model": bad}, tmp / "shape.pth")
    with pytest.raises(CheckpointError, match="music_proj.bias: shape"):
        import_clamp2(tmp / "m3.pth", tmp / "shape.pth", tmp / "out")
    (tmp / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        import_clamp2(tmp / "m3.pth", tmp / "junk.pth", tmp / "out")
