"""Pair building and NotaGen's exclusions on constructed scores."""

from __future__ import annotations

import math

import pytest

from pipelines.dpo.pairs import Candidate, build_pairs, places, select, select_within, staves_grouped


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


def test_the_parse_guard_excludes_unread_and_unchecked_pieces_from_the_chosen_only():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    parses = [False, None, True, True, True, True, True, False]
    chosen, rejected = select(cands(scores, music21_reads=parses, require_music21_reads=[True] * 8), 0.25)
    assert [c.id for c in chosen] == ["s2", "s3"]  # s0 music21 cannot read, s1 was never checked
    assert [c.id for c in rejected] == ["s6", "s7"]  # an unreadable piece is a fine rejection
    assert cands([0.5], music21_reads=[False], require_music21_reads=[True])[0].excluded == "music21 cannot read it"
    assert cands([0.5], music21_reads=[None], require_music21_reads=[True])[0].excluded == "not checked by music21"
    assert cands([0.5], music21_reads=[False])[0].excluded == ""  # the guard off: not an exclusion


def test_places_split_by_shares_with_largest_remainders():
    assert places(10, {"2/4": 0.57, "2/2": 0.3, "6/8": 0.13}) == {"2/4": 6, "2/2": 3, "6/8": 1}
    assert places(3, {"a": 1, "b": 1, "c": 1, "d": 1}) == {"a": 1, "b": 1, "c": 1, "d": 0}  # ties by name
    assert places(4, {"a": 0.0, "b": 2.0}) == {"b": 4} and places(0, {"a": 1.0}) == {} and places(3, {}) == {}


def test_the_chosen_keep_the_real_pieces_styles():
    # the reward ranks every 6/8 piece above every 2/4 one; the prompt's real pieces are three quarters 2/4
    scores = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]
    meters = ["6/8"] * 6 + ["2/4"] * 10
    free, _ = select(cands(scores, group=meters), 0.25)
    assert [c.id for c in free] == ["s0", "s1", "s2", "s3"]  # the reward alone: all 6/8
    chosen, rejected = select(cands(scores, group=meters), 0.25, {"2/4": 0.75, "6/8": 0.25})
    assert [c.id for c in chosen] == ["s0", "s6", "s7", "s8"]  # the best 6/8 and the best three 2/4
    assert [c.id for c in rejected] == ["s12", "s13", "s14", "s15"]  # below every chosen one
    # a style with too few eligible pieces leaves its places empty rather than give them to another style
    valid = [True] * 6 + [True] + [False] * 9
    chosen, _ = select(cands(scores, group=meters, valid=valid), 0.25, {"2/4": 0.75, "6/8": 0.25})
    assert [c.id for c in chosen] == ["s0", "s6"]
    # a style no real piece has is never chosen; a prompt without real shares is ranked as one group
    assert select(cands([0.9, 0.1], group=["9/8", "2/4"]), 0.5, {"2/4": 1.0})[0][0].id == "s1"
    pairs = build_pairs(cands(scores, group=meters), 0.25, shares={"other prompt": {"2/4": 1.0}})
    assert {p.chosen for p in pairs} == {"s0", "s1", "s2", "s3"}


def test_pairs_within_a_style_compare_pieces_of_one_metre():
    # the same ranking: every 6/8 piece above every 2/4 one, real pieces three quarters 2/4
    scores = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]
    meters = ["6/8"] * 6 + ["2/4"] * 10
    shares = {"2/4": 0.75, "6/8": 0.25}
    groups = select_within(cands(scores, group=meters), 0.25, shares)
    # 6/8: its best is chosen, its worst (s5) rejected; 2/4: the best three against the worst three
    assert [([c.id for c in ch], [r.id for r in rj]) for ch, rj in groups] == [
        (["s6", "s7", "s8"], ["s13", "s14", "s15"]),
        (["s0"], ["s5"]),
    ]
    pairs = build_pairs(cands(scores, group=meters), 0.25, shares={"p": shares}, within=True)
    assert len(pairs) == 3 * 3 + 1 and all(meters[int(p.chosen[1:])] == meters[int(p.rejected[1:])] for p in pairs)
    # across styles (the default) the rejected are the overall worst: all 2/4, so 2/4 is what DPO pushes away from
    across = build_pairs(cands(scores, group=meters), 0.25, shares={"p": shares})
    assert {meters[int(p.rejected[1:])] for p in across} == {"2/4"}
    # a style whose worst piece left scores above its lowest chosen (an excluded piece) gives no pair rather
    # than a wrong one
    [(chosen, rejected)] = select_within(cands([0.9, 0.8], group=["a", "a"], valid=[False, True]), 0.5, {"a": 1.0})
    assert [c.id for c in chosen] == ["s1"] and rejected == []
