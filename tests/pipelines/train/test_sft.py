"""SFT's pure parts: schedule, deterministic data order, scored chars, the unigram baseline."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from base.corpus import CorpusMissing
from base.typed_config import ConfigError
from models.patchilizer import Patchilizer
from pipelines.train.config import SFTConfig
from pipelines.train.sft import PatchBatches, Piece, load_split, lr_at, scored_chars, unigram_bits
from tests.conftest import FOLK, PIECE


def pieces(n: int = 5) -> list[Piece]:
    return [Piece(f"p{i}", "x", PIECE if i % 2 else FOLK) for i in range(n)]


def test_lr_schedule_by_hand():
    assert lr_at(0, 1.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos = 0
    assert lr_at(110, 1.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_at(200, 1.0, 10, 110, 0.1) == pytest.approx(0.1)  # past the end: the floor


def test_data_order_is_a_function_of_seed_and_step():
    a, b = PatchBatches(pieces(), Patchilizer(), seed=3), PatchBatches(pieces(), Patchilizer(), seed=3)
    assert a.indices(7, 4) == b.indices(7, 4)
    assert PatchBatches(pieces(), Patchilizer(), seed=4).indices(0, 5) != a.indices(0, 5)
    # one epoch visits every piece once
    epoch0 = [i for step in range(5) for i, e in a.indices(step, 1)]
    assert sorted(epoch0) == list(range(5))
    # workers split a step's pieces without overlap
    w0 = a.micro_batch(2, 0, 0, 2, 2, 1)[0]
    w1 = a.micro_batch(2, 0, 1, 2, 2, 1)[0]
    assert w0.shape[0] == w1.shape[0] == 2


def test_scored_chars_skip_bos_patch_and_pads():
    batches = PatchBatches([Piece("a", "x", FOLK)], Patchilizer())
    patches, mask = batches.collate([(0, 0)])
    chars = scored_chars(patches, mask)
    text_chars = len(FOLK.replace("[V:1]", "[r:0/1][V:1]", 1).replace("\n[V:1]", "\n[r:1/0][V:1]"))
    assert 0 not in chars.tolist()
    assert len(chars) > text_chars  # text plus eos chars and the eos patch


def test_unigram_baseline_is_the_cross_entropy_of_add_one_char_frequencies():
    # one short piece as both splits: the baseline is the entropy of its own (add-one smoothed) char counts
    batches = PatchBatches([Piece("a", "x", FOLK)], Patchilizer())
    patches = Patchilizer().encode_train(FOLK)
    chars = Counter(c for patch in patches[1:] for c in patch if c != 0)  # scored: after the bos patch, no pads
    n = sum(chars.values())
    expected = -sum(k * math.log2((k + 1) / (n + 128)) for k in chars.values()) / n
    assert unigram_bits(batches, batches.eval_batches(4)) == pytest.approx(expected, rel=1e-9)


def test_missing_corpus_says_how_to_build_it(tmp_path):
    with pytest.raises(CorpusMissing, match="clampdpo data build"):
        load_split(tmp_path, "train")


def test_sft_config_names_bad_fields():
    with pytest.raises(ConfigError, match="zero_stage"):
        SFTConfig(zero_stage=4)
