"""Export to NotaGen's checkpoint format: the names and shapes NotaGen's class expects (written out here from
its model code: a one-hot patch embedding, GPT-2 blocks with Conv1D attention and MLP, a GPT-2 LM head over 128
characters), and the round trip import → export → import, exact in weights and log-probs."""

from __future__ import annotations

import pytest
import torch

from base.errors import CheckpointError
from clampdpo.main import main
from models.export_notagen import export_notagen, notagen_differences
from models.import_notagen import import_notagen
from models.notagen import NotaGenConfig, NotaGenForCausalLM
from tests.conftest import PIECE, patch_batch

H, PATCH_LAYERS, CHAR_LAYERS, LENGTH = 64, 2, 1, 64


def block(prefix: str) -> dict[str, tuple[int, ...]]:
    """One GPT-2 block of NotaGen's decoders (transformers' Conv1D stores weights as in × out)."""
    return {
        f"{prefix}.ln_1.weight": (H,),
        f"{prefix}.ln_1.bias": (H,),
        f"{prefix}.attn.c_attn.weight": (H, 3 * H),
        f"{prefix}.attn.c_attn.bias": (3 * H,),
        f"{prefix}.attn.c_proj.weight": (H, H),
        f"{prefix}.attn.c_proj.bias": (H,),
        f"{prefix}.ln_2.weight": (H,),
        f"{prefix}.ln_2.bias": (H,),
        f"{prefix}.mlp.c_fc.weight": (H, 4 * H),
        f"{prefix}.mlp.c_fc.bias": (4 * H,),
        f"{prefix}.mlp.c_proj.weight": (4 * H, H),
        f"{prefix}.mlp.c_proj.bias": (H,),
    }


def notagen_expects() -> dict[str, tuple[int, ...]]:
    """NotaGenLMHeadModel's state dict: PatchLevelDecoder (Linear(16·128 → H) + GPT2Model with a vocabulary of 1
    and PATCH_LENGTH positions) and CharLevelDecoder (GPT2LMHeadModel: 128 characters, PATCH_SIZE + 1 positions)."""
    out = {
        "patch_level_decoder.patch_embedding.weight": (H, 16 * 128),
        "patch_level_decoder.patch_embedding.bias": (H,),
        "patch_level_decoder.base.wte.weight": (1, H),
        "patch_level_decoder.base.wpe.weight": (LENGTH, H),
        "patch_level_decoder.base.ln_f.weight": (H,),
        "patch_level_decoder.base.ln_f.bias": (H,),
        "char_level_decoder.base.transformer.wte.weight": (128, H),
        "char_level_decoder.base.transformer.wpe.weight": (17, H),
        "char_level_decoder.base.transformer.ln_f.weight": (H,),
        "char_level_decoder.base.transformer.ln_f.bias": (H,),
        "char_level_decoder.base.lm_head.weight": (128, H),
    }
    for i in range(PATCH_LAYERS):
        out.update(block(f"patch_level_decoder.base.h.{i}"))
    for i in range(CHAR_LAYERS):
        out.update(block(f"char_level_decoder.base.transformer.h.{i}"))
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = NotaGenConfig(
        patch_num_layers=PATCH_LAYERS, char_num_layers=CHAR_LAYERS, hidden_size=H, patch_length=LENGTH, dropout=0.0
    )
    model = NotaGenForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("model") / "policy"
    model.save_pretrained(folder)
    return folder, model


def test_the_export_has_notagens_names_and_shapes(saved, tmp_path):
    folder, _ = saved
    done = export_notagen(folder, tmp_path / "x.pth")
    state = torch.load(done.path, map_location="cpu", weights_only=True)["model"]
    assert {k: tuple(v.shape) for k, v in state.items()} == notagen_expects()
    assert done.size == "custom" and done.config_py == {
        "PATCH_SIZE": 16,
        "PATCH_LENGTH": LENGTH,
        "PATCH_NUM_LAYERS": PATCH_LAYERS,
        "CHAR_NUM_LAYERS": CHAR_LAYERS,
        "HIDDEN_SIZE": H,
    }
    # the character head is tied to the character embedding, as NotaGen saves it
    assert torch.equal(
        state["char_level_decoder.base.lm_head.weight"], state["char_level_decoder.base.transformer.wte.weight"]
    )


def test_import_export_import_is_exact_in_weights_and_log_probs(saved, tmp_path):
    folder, model = saved
    first = export_notagen(folder, tmp_path / "a.pth").path
    back = import_notagen(
        first,
        tmp_path / "back",
        patch_num_layers=PATCH_LAYERS,
        char_num_layers=CHAR_LAYERS,
        hidden_size=H,
        patch_length=LENGTH,
        size="tiny",
    )
    again = export_notagen(back, tmp_path / "b.pth").path
    a, b = (torch.load(p, weights_only=True)["model"] for p in (first, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    reloaded = NotaGenForCausalLM.from_pretrained(back).eval()
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in model.state_dict().items())
    patches, mask = patch_batch([PIECE], patch_length=LENGTH)
    with torch.no_grad():
        assert torch.equal(model.patch_log_probs(patches, mask), reloaded.patch_log_probs(patches, mask))


def test_a_model_notagen_cannot_express_is_refused_naming_the_difference(tmp_path, capsys):
    odd = NotaGenConfig(patch_num_layers=1, char_num_layers=1, hidden_size=64, num_attention_heads=2, patch_length=32)
    assert notagen_differences(odd) == ["2 attention heads for hidden size 64 (NotaGen: hidden size / 64 = 1)"]
    NotaGenForCausalLM(odd).save_pretrained(tmp_path / "odd")
    with pytest.raises(CheckpointError, match="attention heads"):
        export_notagen(tmp_path / "odd", tmp_path / "odd.pth")
    assert not (tmp_path / "odd.pth").exists()
    assert main(["model", "export-notagen", str(tmp_path / "odd"), str(tmp_path / "odd.pth")]) == 1


def test_the_command_names_the_size_and_notagens_config(saved, tmp_path, capsys):
    folder, _ = saved
    assert main(["model", "export-notagen", str(folder), str(tmp_path / "c.pth")]) == 0
    out = capsys.readouterr().out
    assert "NotaGen checkpoint (custom, " in out and "PATCH_LENGTH=64" in out and "HIDDEN_SIZE=64" in out
