"""The evaluator model: embedding, learning, and CLaMP 2's windowed feature."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluators.data import Batches, Piece, mask_patches
from evaluators.features import FeatureCache, FeatureExtractor
from evaluators.m3_patchilizer import MASK_ID, PAD_ID, M3Patchilizer
from evaluators.model import ClampConfig, ClampModel, text_ids

LONG = "L:1/8\nM:4/4\nK:C\nV:1 treble\n" + "".join(f"[V:1]{'CDEFGABc'[i % 8]}8|\n" for i in range(40))


def tiny(**kw) -> ClampModel:
    torch.manual_seed(0)
    return ClampModel(
        ClampConfig(
            **{
                "hidden_size": 32,
                "num_layers": 1,
                "decoder_layers": 1,
                "text_layers": 1,
                "text_hidden_size": 32,
                "projection_size": 16,
                "dropout": 0.0,
                **kw,
            }
        )
    ).eval()


def test_gathered_embedding_equals_the_one_hot_linear():
    model = tiny()
    ids = torch.randint(0, 128, (2, 3, 64))
    one_hot = F.one_hot(ids, 128).reshape(2, 3, 64 * 128).float()
    expected = model.music_encoder.patch_embedding(one_hot)
    assert torch.allclose(model.music_encoder.embed(ids), expected, atol=1e-5)


def test_patch_embedding_starts_at_the_scale_of_a_position():
    # A patch sums 64 one-hot columns; at BERT's std it would start 8× the position embedding and the pooled
    # feature would ignore bar order (measured on a trained tiny evaluator: cosine 0.9998 to a shuffled copy).
    model = ClampModel(ClampConfig.from_size("tiny"))
    patches = torch.tensor(M3Patchilizer().encode(LONG))
    content = model.music_encoder.embed(patches) - model.music_encoder.patch_embedding.bias
    position = model.music_encoder.base.embeddings.position_embeddings.weight[: len(patches)]
    ratio = float(content.norm(dim=-1).mean() / position.norm(dim=-1).mean())
    assert 0.5 < ratio < 2.0


def test_masking_selects_the_clamp2_share():
    patches = [[1] * 64] + [[1, 65 + i, 2] + [0] * 61 for i in range(10)] + [[2] * 64]
    inputs, selected = mask_patches(patches, 0.45, random.Random(0), "mask")
    assert sum(selected) == 6  # ceil(0.45 · 12)
    assert all(inputs[i] == [MASK_ID] * 64 for i, s in enumerate(selected) if s)
    shuffled, sel = mask_patches(patches, 0.45, random.Random(0), "shuffle")
    assert all(sorted(a) == sorted(b) and len(a) == 64 for a, b in zip(shuffled, patches))


def test_masked_patch_pretraining_learns():
    model = tiny().train()
    pieces = [Piece(f"p{i}", "x", LONG.replace("C8", f"{'DEFG'[i % 4]}8"), {}) for i in range(4)]
    batches = Batches(pieces, M3Patchilizer(), 32, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        loss = model.masked_patch_loss(*batches.masked(step, 4, 0.45))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_contrastive_loss_by_hand_and_learning():
    model = tiny()
    ids, mask = text_ids(["period: Baroque", "period: Folk"])
    patches = torch.tensor([M3Patchilizer().encode(LONG)[:8], M3Patchilizer().encode(LONG.replace("C", "E"))[:8]])
    pm = torch.ones(2, 8, dtype=torch.long)
    out = model.contrastive(ids, mask, patches, pm)
    t = F.normalize(model.text_features(ids, mask), dim=-1)
    m = F.normalize(model.music_features(patches, pm), dim=-1)
    logits = model.logit_scale.exp() * t @ m.t()
    by_hand = 0.5 * (F.cross_entropy(logits, torch.arange(2)) + F.cross_entropy(logits.t(), torch.arange(2)))
    assert out.loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    first = out.loss.item()
    for _ in range(50):
        loss = model.contrastive(ids, mask, patches, pm).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 4


def test_long_piece_feature_is_the_length_weighted_mean_of_windows(tmp_path):
    model = tiny(patch_length=16)
    extractor = FeatureExtractor(model, "cpu", batch_size=2, cache=FeatureCache(tmp_path / "cache.npz"))
    patches = M3Patchilizer().encode(LONG)
    assert len(patches) == 46  # 4 header lines + 40 bars + bos + eos
    windows = [(0, 16, 16), (16, 32, 16), (30, 46, 14)]
    with torch.no_grad():
        feats = [
            model.music_features(torch.tensor([patches[s:e]]), torch.ones(1, e - s, dtype=torch.long))[0]
            for s, e, _ in windows
        ]
    expected = (16 * feats[0] + 16 * feats[1] + 14 * feats[2]) / 46
    [got] = extractor.extract([LONG])
    assert np.allclose(got, expected.numpy(), atol=1e-5)
    # batched with a short piece and padding, and from the cache after a reload: the same numbers
    again = FeatureExtractor(model, "cpu", batch_size=4, cache=FeatureCache(tmp_path / "cache.npz"))
    assert np.allclose(again.extract(["%Folk\n" + LONG])[0], got, atol=1e-6)  # prompt comments do not count
    fresh = FeatureExtractor(model, "cpu", batch_size=4)
    both = fresh.extract(["L:1/8\nK:C\nV:1 treble\n[V:1]C8|\n", LONG])
    assert np.allclose(both[1], got, atol=1e-5)
    assert PAD_ID == 0


def test_hard_negatives_are_only_negatives():
    model = tiny()
    ids, mask = text_ids(["period: Baroque", "period: Folk"])
    enc = M3Patchilizer().encode
    patches = torch.tensor([enc(LONG)[:8], enc(LONG.replace("C", "E"))[:8]])
    pm = torch.ones(2, 8, dtype=torch.long)
    negatives = (torch.tensor([enc(LONG.replace("D", "F"))[:8]]), torch.ones(1, 8, dtype=torch.long))
    out = model.contrastive(ids, mask, patches, pm, negatives)
    assert out.logits_per_text.shape == (2, 3)
    t = F.normalize(model.text_features(ids, mask), dim=-1)
    m = F.normalize(
        model.music_features(torch.cat([patches, negatives[0]]), torch.ones(3, 8, dtype=torch.long)), dim=-1
    )
    logits = model.logit_scale.exp() * t @ m.t()
    by_hand = 0.5 * (F.cross_entropy(logits, torch.arange(2)) + F.cross_entropy(logits[:, :2].t(), torch.arange(2)))
    assert out.loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_cache_is_bound_to_the_model(tmp_path):
    first, second = tiny(), tiny()
    with torch.no_grad():
        second.music_proj.bias.add_(1.0)
    cache = tmp_path / "cache.npz"
    a = FeatureExtractor(first, "cpu", cache=FeatureCache(cache)).extract([LONG])
    b = FeatureExtractor(second, "cpu", cache=FeatureCache(cache)).extract([LONG])  # retrained model, same file
    assert not np.allclose(a, b)
    assert np.allclose(b, FeatureExtractor(second, "cpu").extract([LONG]), atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = tiny()
    batches = Batches([Piece("p", "x", LONG, {})], M3Patchilizer(), 32, seed=0)
    batch = batches.masked(0, 1, 0.45)
    model.save_pretrained(tmp_path / "m")
    loaded = ClampModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.music_decoder.base.lm_head.weight is loaded.music_decoder.base.transformer.wte.weight
    with torch.no_grad():
        assert torch.allclose(model.masked_patch_loss(*batch), loaded.masked_patch_loss(*batch))
