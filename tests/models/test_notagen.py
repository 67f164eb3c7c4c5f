"""The decoder: hierarchical log-likelihood, TRL's flat view, save/load, and NotaGen checkpoint import."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from models.import_notagen import CheckpointError, convert_state_dict, import_notagen, read_state_dict
from models.notagen import SIZES, NotaGenConfig, NotaGenForCausalLM, completion_labels
from models.patchilizer import PAD_ID
from tests.conftest import FOLK, PIECE, notagen_layout, patch_batch


def tiny_config(**kw) -> NotaGenConfig:
    return NotaGenConfig(
        **{"patch_num_layers": 2, "char_num_layers": 1, "hidden_size": 64, "patch_length": 64, "dropout": 0.0, **kw}
    )


@pytest.fixture(scope="module")
def model() -> NotaGenForCausalLM:
    torch.manual_seed(0)
    return NotaGenForCausalLM(tiny_config()).eval()


def reference_log_prob(patch_decoder, patch_embedding, char_lm, patches: torch.Tensor) -> float:
    """NotaGen's definition, written out plainly for one piece: every char after the bos patch, pads skipped."""
    one_hot = torch.nn.functional.one_hot(patches, 128).float().reshape(1, len(patches), -1)
    hidden = patch_decoder(inputs_embeds=patch_embedding(one_hot)).last_hidden_state[0]
    total = 0.0
    for i in range(1, len(patches)):
        chars = patches[i]
        embeds = torch.cat([hidden[i - 1][None], char_lm.transformer.wte(chars)])[None]
        logps = char_lm(inputs_embeds=embeds).logits[0, :-1].log_softmax(-1)
        for j, c in enumerate(chars.tolist()):
            if c != PAD_ID:
                total += float(logps[j, c])
    return total


def test_flat_view_through_trl_equals_hierarchical_log_probs(model):
    patches, mask = patch_batch([PIECE, FOLK])
    prompt_patches = torch.tensor([4, 4])  # bos + three prompt lines: the completion is the rest
    with torch.no_grad():
        hierarchical = model.patch_log_probs(patches, mask, first_scored_patch=prompt_patches)
    flat = patches.flatten(1)
    attention = mask.repeat_interleave(16, dim=1)
    completion = attention.clone()
    completion[:, : 4 * 16] = 0
    fused = NotaGenForCausalLM(model.config).eval()
    fused.load_state_dict(model.state_dict())
    add_fused_lm_head(fused)  # exactly what TRL's DPOTrainer does to the policy
    with torch.no_grad():
        out = fused(
            input_ids=flat, attention_mask=attention, labels=completion_labels(flat, completion), fused_lm_head=True
        )
    assert torch.allclose(out.log_probs.sum(1), hierarchical, atol=1e-4, rtol=1e-5)
    assert (hierarchical < 0).all()


def test_flat_logits_match_the_patch_loss(model):
    patches, mask = patch_batch([PIECE])
    flat = patches.flatten(1)
    with torch.no_grad():
        loss, n = model.patch_loss(patches, mask)
        completion = torch.ones_like(flat)
        completion[:, :16] = 0  # the bos patch is always context: NotaGen never scores it
        out = model(input_ids=flat, labels=completion_labels(flat, completion))
    assert n == int((patches[:, 1:] != PAD_ID).sum())
    assert torch.allclose(out.loss, loss, atol=1e-5)


def test_flat_view_is_causal_for_partial_patches(model):
    patches, _ = patch_batch([PIECE])
    flat = patches.flatten(1)
    with torch.no_grad():
        full = model(input_ids=flat).logits
        cut = model(input_ids=flat[:, :70]).logits  # ends inside patch 4
    assert torch.allclose(full[:, :70], cut, atol=1e-5)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, NotaGenForCausalLM)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.char_decoder.wte.weight.data_ptr()
    patches, mask = patch_batch([PIECE, FOLK])
    with torch.no_grad():
        assert torch.allclose(loaded.patch_log_probs(patches, mask), model.patch_log_probs(patches, mask))


def test_sizes_match_notagen():
    assert SIZES["small"] == dict(patch_num_layers=12, char_num_layers=3, hidden_size=768, patch_length=2048)
    assert SIZES["medium"] == dict(patch_num_layers=16, char_num_layers=3, hidden_size=1024, patch_length=2048)
    assert SIZES["large"] == dict(patch_num_layers=20, char_num_layers=6, hidden_size=1280, patch_length=1024)
    assert SIZES["x"] == SIZES["large"]
    cfg = NotaGenConfig.from_size("large")
    assert cfg.num_attention_heads == 20 and cfg.char_config().n_positions == 17


# ---------------------------------------------------------------------------- NotaGen checkpoints


@pytest.fixture
def notagen_checkpoint(tmp_path):
    torch.manual_seed(1)
    cfg = NotaGenConfig.from_size("tiny", dropout=0.0)
    original = notagen_layout(cfg).eval()
    path = tmp_path / "notagen.pth"
    torch.save({"model": original.state_dict()}, path)
    return path, original


def test_import_gives_the_same_log_probs(notagen_checkpoint, tmp_path):
    path, original = notagen_checkpoint
    out = import_notagen(path, tmp_path / "imported", size="tiny")
    model = NotaGenForCausalLM.from_pretrained(out).eval()
    patches, mask = patch_batch([PIECE], patch_length=512)
    with torch.no_grad():
        ours = float(model.patch_log_probs(patches, mask)[0])
        theirs = reference_log_prob(
            original.patch_level_decoder.base,
            original.patch_level_decoder.patch_embedding,
            original.char_level_decoder.base,
            patches[0],
        )
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_import_names_missing_extra_and_mis_shaped_keys(notagen_checkpoint):
    path, _ = notagen_checkpoint
    state = read_state_dict(path)
    cfg = NotaGenConfig.from_size("tiny")
    missing = {k: v for k, v in state.items() if k != "patch_level_decoder.base.h.1.mlp.c_fc.weight"}
    with pytest.raises(CheckpointError, match=r"missing key 'patch_level_decoder\.base\.h\.1\.mlp\.c_fc\.weight'"):
        convert_state_dict(missing, cfg)
    with pytest.raises(CheckpointError, match="extra key 'classifier.weight'"):
        convert_state_dict({**state, "classifier.weight": torch.zeros(1)}, cfg)
    with pytest.raises(CheckpointError, match="extra key 'patch_level_decoder.base.h.3.ln_1.weight'"):
        convert_state_dict({**state, "patch_level_decoder.base.h.3.ln_1.weight": torch.zeros(192)}, cfg)
    with pytest.raises(CheckpointError, match="shape mismatch for 'patch_level_decoder.patch_embedding.weight'"):
        convert_state_dict(state, NotaGenConfig.from_size("tiny", hidden_size=128))


def test_import_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        read_state_dict(bad)
