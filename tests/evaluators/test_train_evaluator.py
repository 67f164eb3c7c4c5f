"""Evaluator training end to end on a small corpus of two styles, and the Evaluator scoring API."""

from __future__ import annotations

import math
import random

import mlflow
import numpy as np
import pytest

from base.typed_config import ConfigError
from evaluators.config import EvaluatorConfig
from evaluators.corrupt import jitter_notes, permute_bars, random_notes, shuffle_bars, swap_voices
from evaluators.evaluator import Evaluator
from evaluators.train import train_evaluator
from tests.conftest import chorale, jig, two_style_corpus


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="subset"):
        EvaluatorConfig(subset="half")
    with pytest.raises(ConfigError, match="mask_ratio"):
        EvaluatorConfig(mask_ratio=1.5)


def test_corruptions_keep_the_form():
    rng = random.Random(0)
    piece = chorale(rng, 8)
    shuffled = shuffle_bars(piece, rng)
    assert sorted(shuffled.splitlines()[:5]) == sorted(piece.splitlines()[:5])
    assert sorted(shuffled) == sorted(piece)  # the same characters, moved
    noisy = random_notes(piece, random.Random(1))
    assert noisy != piece and len(noisy) == len(piece) and noisy.count("|") == piece.count("|")
    jittered = jitter_notes(piece, random.Random(2))
    assert jittered != piece and len(jittered) == len(piece) and jittered.splitlines()[:5] == piece.splitlines()[:5]
    permuted = permute_bars(piece, random.Random(3))
    assert sorted(permuted.splitlines()) == sorted(piece.splitlines()) and permuted != piece
    swapped = swap_voices(piece, random.Random(4))
    first = [ln for ln in piece.splitlines() if ln.startswith("[V:1]")][0]
    top, bass = first[len("[V:1]") :].split("[V:2]")
    assert f"[V:1]{bass}[V:2]{top}" in swapped  # two voices: the parts trade places in every bar


def test_hard_negative_is_the_corrupted_crop_itself():
    from evaluators.data import Batches, Piece
    from evaluators.m3_patchilizer import BOS_ID, EOS_ID, M3Patchilizer

    text = "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n" + "".join(
        f"[V:1]{'GABcdefg'[k % 8]}2 {'GABcdefg'[(k * 3) % 8]}6|[V:2]{'CDEFGAB'[k % 7]},8|\n" for k in range(60)
    )
    batches = Batches([Piece("p", "x", text, {})], M3Patchilizer(), train_patches=24, seed=0)
    patches = batches._encoded[0]
    assert len(patches) > 24  # long enough to be cropped
    middle = patches[40:64]
    for name, fn in (("permute_bars", permute_bars), ("swap_voices", swap_voices)):
        bad = batches.corrupt_crop(middle, fn, random.Random(1))
        # the same bars as the crop (no other excerpt of the piece), no bos/eos patch the crop did not have
        assert len(bad) == len(middle) and bad != middle
        assert bad[0] != [BOS_ID] * 64 and bad[-1] != [EOS_ID] * 64
        if name == "permute_bars":
            assert sorted(map(tuple, bad)) == sorted(map(tuple, middle))
        else:  # every bar keeps its voice label but plays the other voice's notes
            assert sorted("".join(map(chr, p)) for p in bad) != sorted("".join(map(chr, p)) for p in middle)
            assert sorted(c for p in bad for c in p) == sorted(c for p in middle for c in p)
    head = patches[:24]
    assert batches.corrupt_crop(head, permute_bars, random.Random(2))[0] == [BOS_ID] * 64


def test_train_evaluator_end_to_end(tmp_path):
    two_style_corpus(tmp_path / "corpus")
    # 60 contrastive steps: the single held-out batch's loss is noisy right after the 30-step warm-up (it
    # spikes at step 40 and settles at step 50 with the music encoder's position init)
    cfg = EvaluatorConfig(
        out_dir=str(tmp_path / "ev"),
        pretrain_steps=20,
        contrastive_steps=60,
        batch_size=8,
        train_patches=32,
        eval_every=20,
        log_every=10,
        min_prompt_pieces=3,
        dropout=0.0,
    )
    result = train_evaluator(cfg, tmp_path / "corpus")
    r = result.report
    assert r["composer/classes"] == 2 and r["composer/accuracy"] == 1.0  # two very different styles
    assert r["prompt/margin"] > 0
    assert set(r) >= {
        "corrupt/real_beats_shuffled_bars",
        "corrupt/real_beats_random_notes",
        "retrieval/text_to_music_top1",
        "retrieval/text_to_music_top5",
    }

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'ev' / 'mlflow.db'}")
    assert len(client.get_metric_history(result.run_id, "contrastive/loss")) == 6
    held_out = [m.value for m in client.get_metric_history(result.run_id, "contrastive/eval_loss")]
    assert len(held_out) == 3 and held_out[-1] < held_out[0]
    assert client.get_metric_history(result.run_id, "pretrain/eval_loss")
    assert (tmp_path / "ev" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()

    ev = Evaluator.load(tmp_path / "ev")
    real = (tmp_path / "corpus" / "interleaved" / "chorale00.abc").read_text()
    records = ev.score([real, jig(random.Random(5), 10), ""], ["Baroque_Bach, Johann Sebastian_Chorus"] * 3)
    assert records[0].clamp_score > records[1].clamp_score  # a chorale beats a jig against the chorale centroid
    assert records[0].valid and records[0].plagiarism  # an exact copy of a ground-truth piece
    assert records[0].max_text_similarity == 1.0
    assert not records[1].plagiarism
    assert math.isnan(records[2].clamp_score) and not records[2].valid and records[2].invalid_reason == "empty piece"
    assert 0 < records[0].pitch_class_entropy <= math.log2(12)
    centred = Evaluator.load(tmp_path / "ev", center=True)
    from evaluators.evaluator import Reference

    everything = Reference.load(tmp_path / "ev" / "reference.npz")  # centred on every real piece, train and eval
    assert np.allclose(centred.offset, everything.features.mean(0), atol=1e-6)
    assert set(centred.reference.splits) == {"train"}  # centroids of the train split only: eval pieces stay real
    rc = centred.score(
        [real, jig(random.Random(5), 10)], ["Baroque_Bach, Johann Sebastian_Chorus"] * 2, guards_on=False
    )
    assert rc[0].clamp_score > rc[1].clamp_score and math.isnan(rc[0].clamp_score_global)
    # centring spreads scores: the jig-vs-chorale gap is wider than on raw features
    assert rc[0].clamp_score - rc[1].clamp_score > records[0].clamp_score - records[1].clamp_score
    # the held-out report measured in the centred space: its own-prompt scores drop from the narrow cone
    from evaluators.data import load_pieces
    from evaluators.report import evaluation_report

    train_p, held_p = load_pieces(tmp_path / "corpus", "train"), load_pieces(tmp_path / "corpus", "eval")
    rep_c = evaluation_report(ev.extractor, train_p, held_p, 3, 0, center=True)
    assert rep_c["score/centred"] == 1.0 and r["score/centred"] == 0.0
    assert rep_c["prompt/own_score"] < r["prompt/own_score"] and rep_c["prompt/margin"] > 0
    assert rep_c["composer/accuracy"] == 1.0
    feats = ev.features([chorale(random.Random(k), 8) for k in range(4)])
    m = ev.set_metrics(feats, ["Baroque_Bach, Johann Sebastian_Chorus"] * 4)
    assert -1 <= m["diversity/mean_pairwise_cosine"] <= 1 and m["frechet/mean_per_prompt"] >= 0
    assert np.isfinite(m["frechet/mean_per_prompt"])
