"""Pure campaign logic: prompt choice, deterministic sample ids and seeds, markers, metrics, pair dataset."""

from __future__ import annotations

import json

import pytest

from base.typed_config import ConfigError
from orchestration.config import load_config
from pipelines.campaign.config import CampaignConfig
from pipelines.campaign.plan import choose_prompts, eval_samples, round_samples
from pipelines.campaign.stages import all_stages, status
from pipelines.campaign.state import Markers
from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.dataset import PairRecord, read_pairs, write_pairs

AVAILABLE = {f"P{i}": ((f"%p{i}\n", "%c\n", "%i\n"), n) for i, n in enumerate([50, 40, 30, 20, 10, 3])}


def test_prompts_are_a_seeded_choice_among_eligible_ones():
    cfg = CampaignConfig(heldout_prompts=2, train_prompts=2, min_prompt_pieces=5)
    a = choose_prompts(AVAILABLE, cfg)
    assert a == choose_prompts(AVAILABLE, cfg)  # deterministic
    held, train = {p.key for p in a.heldout}, [p.key for p in a.train]
    assert len(held) == 2 and len(train) == 2 and not held & set(train)
    assert "P5" not in held | set(train)  # 3 pieces < min_prompt_pieces
    rest = sorted((k for k in AVAILABLE if k not in held and k != "P5"), key=lambda k: -AVAILABLE[k][1])
    assert train == rest[:2]  # the training prompts with the most pieces
    only = choose_prompts(AVAILABLE, cfg, scored={"P0", "P1", "P2"})
    assert {p.key for p in only.train + only.heldout} <= {"P0", "P1", "P2"}


def test_named_heldout_prompts_and_clear_errors():
    cfg = CampaignConfig(heldout_keys=["P3"], train_prompts=0, min_prompt_pieces=5)
    p = choose_prompts(AVAILABLE, cfg)
    assert [x.key for x in p.heldout] == ["P3"] and [x.key for x in p.train] == ["P0", "P1", "P2", "P4"]
    with pytest.raises(ValueError, match="heldout_keys"):
        choose_prompts(AVAILABLE, CampaignConfig(heldout_keys=["P5"], min_prompt_pieces=5))
    with pytest.raises(ValueError, match="min_prompt_pieces"):
        choose_prompts(AVAILABLE, CampaignConfig(heldout_prompts=5, min_prompt_pieces=20))


def test_sample_ids_and_seeds_depend_only_on_campaign_round_prompt_and_index():
    prompts = choose_prompts(AVAILABLE, CampaignConfig(heldout_prompts=1, min_prompt_pieces=5))
    r1 = round_samples(prompts.train, 1, 4, campaign_seed=7)
    assert r1 == round_samples(prompts.train, 1, 4, campaign_seed=7)
    assert len(r1) == 4 * len(prompts.train) and len({s.id for s in r1}) == len(r1)
    assert r1[0].id == "r01-p000-s0000"
    assert {s.seed for s in r1}.isdisjoint({s.seed for s in round_samples(prompts.train, 2, 4, 7)})
    assert [s.seed for s in r1] != [s.seed for s in round_samples(prompts.train, 1, 4, 8)]
    # held-out samples reuse their seeds every round, so rounds compare sample by sample
    e0, e3 = eval_samples(prompts.heldout, 0, 3, 7), eval_samples(prompts.heldout, 3, 3, 7)
    assert [s.seed for s in e0] == [s.seed for s in e3] and e0[0].id != e3[0].id


def _st(folder, rounds=1):
    return {stage: (state, detail) for stage, state, detail in status(folder, rounds)}


def test_markers_and_status(tmp_path):
    m = Markers(tmp_path)
    assert status(tmp_path, 1)[0] == ("corpus", "next", "")
    m.mark("corpus", {"corpus": "x"})
    m.mark("policy")
    rows = _st(tmp_path)
    assert rows["corpus"][0] == "done" and rows["evaluator"][0] == "next" and rows["round-01/dpo"][0] == "pending"
    assert m.done("corpus")["corpus"] == "x" and m.done("judge") is None
    assert all_stages(2)[-6:] == [
        "round-02/sample",
        "round-02/score",
        "round-02/pairs",
        "round-02/dpo",
        "round-02/eval",
        "round-02/report",
    ]
    assert not list(tmp_path.glob("markers/*.tmp*"))  # atomic writes leave no temp files


def test_a_marker_records_its_outputs_and_status_finds_every_kind_of_damage(tmp_path):
    m = Markers(tmp_path)
    units = tmp_path / "round-01" / "samples" / "units"
    units.mkdir(parents=True)
    (units / "unit-0000.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    (tmp_path / "prompts.json").write_text('{"train": []}')
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    for stage in all_stages(1)[:5]:
        m.mark(stage)
    m.mark("real", outputs=[tmp_path / "prompts.json"])
    m.mark("round-00/eval")
    m.mark("round-01/sample", outputs=[units.parent])
    m.mark("round-01/score")
    m.mark("round-01/pairs", outputs=[tmp_path / "pairs.jsonl"])
    recorded = m.done("round-01/sample")["outputs"]
    assert list(recorded) == ["round-01/samples/units/unit-0000.jsonl"] and recorded[
        "round-01/samples/units/unit-0000.jsonl"
    ][0] == len('{"id": "a"}\n{"id": "b"}\n')
    rows = _st(tmp_path)
    assert {s for s, (state, _) in rows.items() if state == "done"} == set(all_stages(1)[:7] + all_stages(1)[8:11])
    # a report not written yet holds up nothing: nothing after it reads it
    assert rows["round-00/report"][0] == "next" and rows["round-01/dpo"][0] == "next"

    # a unit cut short (markers intact), a file deleted, a file changed in place, a marker of garbage
    (units / "unit-0000.jsonl").write_text('{"id": "a"}\n{"id"')
    rows = _st(tmp_path)
    assert rows["round-01/sample"][0] == "damaged" and "unit-0000.jsonl changed" in rows["round-01/sample"][1]
    assert rows["round-01/score"][0] == "stale" and rows["round-01/pairs"][0] == "stale"
    (units / "unit-0000.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    (tmp_path / "pairs.jsonl").unlink()
    assert _st(tmp_path)["round-01/pairs"] == ("damaged", "pairs.jsonl is missing")
    (tmp_path / "prompts.json").write_text('{"tRain": []}')  # same size, other content
    rows = _st(tmp_path)
    assert rows["real"][0] == "damaged" and "content differs" in rows["real"][1]
    assert rows["round-00/eval"][0] == "stale"
    m.path("corpus").write_text("{ not json")
    rows = _st(tmp_path)
    assert rows["corpus"][0] == "damaged" and "marker corpus.json is damaged" in rows["corpus"][1]
    assert m.check("corpus") == (None, [rows["corpus"][1]])
    m.path("policy").write_text('{"stage": "judge"}')
    assert "not a marker of this stage" in _st(tmp_path)["policy"][1]
    # a marker written before outputs were recorded is trusted as before
    m.path("judge").write_text('{"stage": "judge", "finished_at": 1}')
    assert m.check("judge")[1] == []
    assert m.clear(["judge", "round-02/eval"]) == ["judge"]


def test_pair_dataset_round_trip_with_version_and_provenance(tmp_path):
    pair = PairRecord(1, "A", "%a\n", "r01-p000-s0001", "r01-p000-s0002", "X", "Y", 0.9, 0.1, 11, 12)
    write_pairs(tmp_path / "pairs.jsonl", [pair], {"round": 1, "policy": "p", "evaluator": "e"})
    assert read_pairs(tmp_path / "pairs.jsonl") == [pair]
    header = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert header["format"] == "clampdpo.pairs" and header["version"] == 1 and header["evaluator"] == "e"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"format": "other"}) + "\n")
    with pytest.raises(ValueError, match="not a clampdpo pair dataset"):
        read_pairs(tmp_path / "bad.jsonl")


def test_campaign_and_dpo_configs_name_the_bad_field():
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        CampaignConfig(samples_per_prompt=1)
    with pytest.raises(ConfigError, match="loss_type"):
        DPORoundConfig(loss_type="magic")
    with pytest.raises(ConfigError, match="reference"):
        DPORoundConfig(reference="latest")
    with pytest.raises(ConfigError, match="campaign.rounds"):
        load_config("default", ["campaign.rounds=-1"])
    assert DPORoundConfig().beta == 0.1 and DPORoundConfig().dpop_lambda == 10.0  # NotaGen's DPOP
