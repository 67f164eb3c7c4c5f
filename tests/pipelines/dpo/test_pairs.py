"""Pair building and NotaGen's exclusions on constructed scores."""

from __future__ import annotations

import math

import pytest

from pipelines.dpo.pairs import Candidate, build_pairs, select, staves_grouped


def cands(scores, **flags):
    return [Candidate(f"s{i}", "p", s, **{k: v[i] for k, v in flags.items()}) for i, s in enumerate(scores)]


def test_top_and_bottom_portion():
    chosen, rejected = select(cands([0.1 * i for i in range(20)]), 0.1)
    assert [c.id for c in chosen] == ["s19", "s18"] and [c.id for c in rejected] == ["s1", "s0"]


def test_exclusions_skip_to_the_next_best_and_may_be_rejected():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    valid = [False, True, True, True, True, True, True, True, True, False]
    plag = [False, True, False, False, False, False, False, False, False, False]
    grouped = [True, True, False, True, True, True, True, True, True, True]
    chosen, rejected = select(cands(scores, valid=valid, plagiarism=plag, staves_grouped=grouped), 0.1)
    assert [c.id for c in chosen] == ["s3"]  # s0 invalid, s1 plagiarism, s2 staves not grouped
    assert [c.id for c in rejected] == ["s9"]  # an invalid piece is a fine rejection


def test_pairs_are_chosen_times_rejected_and_capped_deterministically():
    cs = cands([i / 40 for i in range(40)]) + [Candidate(f"q{i}", "q", i / 10) for i in range(10)]
    pairs = build_pairs(cs, 0.1)
    assert len([p for p in pairs if p.prompt == "p"]) == 16 and len([p for p in pairs if p.prompt == "q"]) == 1
    assert all(p.chosen_score > p.rejected_score for p in pairs)
    capped = build_pairs(cs, 0.1, max_pairs_per_prompt=5, seed=3)
    assert len([p for p in capped if p.prompt == "p"]) == 5
    assert capped == build_pairs(cs, 0.1, max_pairs_per_prompt=5, seed=3)


def test_nothing_eligible_gives_no_pairs_and_nan_scores_rank_last():
    assert build_pairs(cands([0.5, 0.4], valid=[False, False]), 0.5) == []
    chosen, rejected = select(cands([math.nan, 0.2, 0.9, 0.1]), 0.25)
    assert [c.id for c in chosen] == ["s2"] and [c.id for c in rejected] == ["s0"]
    with pytest.raises(ValueError, match="select_portion"):
        select(cands([0.1]), 0.7)


def test_staves_of_one_instrument_must_be_grouped():
    head = 'V:1 treble nm="Piano" snm="Pno."\nV:2 bass nm="Piano" snm="Pno."\n'
    assert staves_grouped("%%score { 1 | 2 }\n" + head)
    assert not staves_grouped("%%score 1 2\n" + head)
    assert staves_grouped('%%score 1 2\nV:1 treble nm="Violin"\nV:2 bass nm="Cello"\n')
    assert staves_grouped("V:1 treble\n")


def test_guard_exclusions_meter_fill_floor_and_the_real_pieces_ceiling():
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    fill = [1.0, 1.0, 0.3, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2]
    chosen, rejected = select(cands(scores, meter_fill=fill, min_meter_fill=[0.5] * 10, ceiling=[0.85] * 10), 0.2)
    # s0 and s1 score above the real pieces' mean (0.85): over-typical; s2's bars do not fill the meter
    assert [c.id for c in chosen] == ["s3", "s4"]
    assert [c.id for c in rejected] == ["s8", "s9"]
    assert cands([0.5], meter_fill=[math.nan], min_meter_fill=[0.5])[0].excluded == "bars do not fill the meter"
    assert cands([0.5], meter_fill=[math.nan])[0].excluded == ""  # no floor: nothing to check
    assert "over-optimisation" in cands([0.9], ceiling=[0.8])[0].excluded
