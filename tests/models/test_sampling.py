"""The sampler: filtering numbers, cached = uncached, per-sample seeds, stream cuts, CLaMP-ready output."""

from __future__ import annotations

import pytest
import torch

from base.abc.interleave import restore_rest_voices
from base.typed_config import ConfigError
from models.notagen import NotaGenConfig, NotaGenForCausalLM
from models.patchilizer import Patchilizer
from models.sampling import Sampler, SamplingConfig, filter_probs
from tests.conftest import FOLK, PIECE

PROMPT = ["%Baroque\n", "%Bach, Johann Sebastian\n", "%Choral\n"]
FOLK_PROMPT = ["%Romantic\n", "%Traditional\n", "%Keyboard\n"]


def test_filter_probs_by_hand():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    # top-k 3 keeps .5 .3 .15 (sum .95); top-p .8: .5 < .8 and .5+.3=.8 reached → keep .5 and .3
    probs = filter_probs(logits, top_k=3, top_p=0.8, temperature=1.0)
    assert torch.allclose(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=1e-6)
    # temperature 0.5 squares the kept probabilities: .625² : .375² = .7353 : .2647
    probs = filter_probs(logits, top_k=3, top_p=0.8, temperature=0.5)
    assert torch.allclose(probs, torch.tensor([0.390625, 0.140625, 0, 0]) / 0.53125, atol=1e-6)
    assert torch.allclose(filter_probs(logits, 0, 1.0, 1.0), torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=1e-6)


def test_sampling_config_checks_fields():
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0.0)


@pytest.fixture(scope="module")
def learned_model() -> NotaGenForCausalLM:
    """A small model that has memorised two pieces, so that sampling produces real tune bodies."""
    torch.manual_seed(0)
    model = NotaGenForCausalLM(
        NotaGenConfig(patch_num_layers=2, char_num_layers=1, hidden_size=64, patch_length=64, dropout=0.0)
    )
    pz = Patchilizer(patch_length=64)
    encoded = [pz.encode_train(t) for t in (PIECE, FOLK)]
    length = max(map(len, encoded))
    patches = torch.zeros(2, length, 16, dtype=torch.long)
    mask = torch.zeros(2, length, dtype=torch.long)
    for i, e in enumerate(encoded):
        patches[i, : len(e)], mask[i, : len(e)] = torch.tensor(e), 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(250):
        loss, _ = model.patch_loss(patches, mask)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first / 4  # it learned
    return model.eval()


def test_greedy_cached_equals_uncached_with_mixed_prompts_and_stream_cuts(learned_model):
    learned_model.config.patch_length = 18  # force stream cuts mid-piece
    try:
        runs = {}
        for use_cache in (True, False):
            cfg = SamplingConfig(top_k=1, max_patches=40, batch_size=3, use_cache=use_cache)
            runs[use_cache] = Sampler(learned_model, cfg).generate([PROMPT, FOLK_PROMPT, ["%Baroque\n"]], [0, 1, 2])
    finally:
        learned_model.config.patch_length = 64
    cached, uncached = runs[True], runs[False]
    assert [s.text for s in cached] == [s.text for s in uncached]
    assert any(s.stream_cuts for s in cached)
    assert cached[0].text.startswith("".join(PROMPT))


def test_memorised_piece_is_regenerated_and_made_clamp_ready(learned_model):
    [sample] = Sampler(learned_model, SamplingConfig(top_k=1, max_patches=60)).generate([PROMPT], [0])
    assert sample.finished and sample.error is None
    assert "[r:0/3][V:1]G2 A2 B2 c2|[V:2]G,8|" in sample.text
    assert "[V:1]G2 A2 B2 c2|[V:2]G,8|\n" in sample.interleaved and "[r:" not in sample.interleaved


def test_a_seed_reproduces_its_sample_alone_or_in_a_batch(learned_model):
    cfg = SamplingConfig(top_k=0, top_p=1.0, temperature=2.0, max_patches=12, batch_size=4)
    batch = Sampler(learned_model, cfg).generate([PROMPT, FOLK_PROMPT, PROMPT, PROMPT], [5, 6, 7, 8])
    [alone] = Sampler(learned_model, cfg).generate([PROMPT], [7])
    assert alone.text == batch[2].text
    assert len({s.text for s in (batch[0], batch[2], batch[3])}) > 1  # different seeds, different pieces


def test_restore_rest_voices_fills_omitted_voices():
    lines = [
        "%%score { ( 1 2 ) | 3 }\n",
        "L:1/8\n",
        "M:3/4\n",
        "K:C\n",
        "V:1 treble\n",
        "V:2 treble\n",
        "V:3 bass\n",
        "[r:0/1][V:1]c2 d2 e2|[V:3]C,6|\n",
        "[r:1/0][V:3]C,6|]\n",
    ]
    out = restore_rest_voices(lines)
    assert out[7] == "[V:1]c2 d2 e2|[V:2]x6|[V:3]C,6|\n"
    assert out[8] == "[V:1]z6|][V:2]x6|][V:3]C,6|]\n"  # voice 1 leads its group: z; voice 2 follows: x


def test_restore_rest_voices_needs_a_tune_body():
    with pytest.raises(ValueError, match="tune body"):
        restore_rest_voices(["L:1/8\n", "K:C\n"])
