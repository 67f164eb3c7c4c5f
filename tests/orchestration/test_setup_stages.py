"""The set-up cache: a campaign on another seed, with more rounds or another DPO, starts from the parts before."""

from __future__ import annotations

from orchestration.config import load_config
from orchestration.setup_stages import SetupCache, cache_config
from tests.conftest import two_style_corpus

KINDS = ("policy", "evaluator", "judge")


def test_another_seed_rounds_or_dpo_finds_the_same_parts_and_their_own_sections_do_not(tmp_path):
    corpus = two_style_corpus(tmp_path / "corpus")
    cache = SetupCache(str(tmp_path / "cache"), rebuild=False)
    first = load_config("tiny", [])
    again = load_config("tiny", ["campaign.seed=1", "campaign.rounds=7", "dpo.beta=0.3", "sampling.top_k=5"])
    keys = {kind: cache.find(kind, corpus, cache_config(first, kind))[0] for kind in KINDS}
    assert {kind: cache.find(kind, corpus, cache_config(again, kind))[0] for kind in KINDS} == keys
    assert len(set(keys.values())) == 3  # the judge is not the evaluator
    for kind, change in (("policy", "train.max_steps=7"), ("evaluator", "evaluator.seed=5"), ("judge", "judge.seed=5")):
        other = load_config("tiny", [change])
        assert cache.find(kind, corpus, cache_config(other, kind))[0] != keys[kind], change


def test_a_part_found_through_a_relative_cache_dir_is_an_absolute_path(tmp_path, monkeypatch):
    # actors and training workers run in folders of their own, where a relative path leads nowhere
    corpus = two_style_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    cache = SetupCache("cache", rebuild=False)
    config = cache_config(load_config("tiny", []), "evaluator")
    key, hit = cache.find("evaluator", corpus, config)
    assert hit is None
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "report.json").write_text("{}")
    cache.store(key, tmp_path / "trained", ["report.json"], {})
    _, hit = cache.find("evaluator", corpus, config)
    assert hit is not None and hit.is_absolute() and (hit / "report.json").is_file()
    assert SetupCache("cache", rebuild=True).find("evaluator", corpus, config)[1] is None  # --no-cache
