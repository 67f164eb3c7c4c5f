"""Stage names are records, not strings read by position: rounds past 99 are named, parsed and cleared right."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.campaign.compare import last_round_details, load_rounds
from pipelines.campaign.layout import Layout, parse_stage, round_name, round_of, stage_name
from pipelines.campaign.stages import StageRunner, all_stages, round_stages
from pipelines.campaign.state import Markers
from tests.conftest import FUZZ


@pytest.mark.parametrize("k", [0, 1, 9, 10, 99, 100, 101, 999, 1000])
def test_a_stage_name_parses_back_to_its_round_and_step(k):
    for step in ("sample", "score", "pairs", "dpo", "eval", "report"):
        assert parse_stage(stage_name(k, step)) == (k, step)
    assert round_of(round_name(k)) == k


def test_set_up_stages_and_foreign_names_are_not_rounds():
    for name in (
        "corpus",
        "real",
        "round-",
        "round-7/eval",
        "round-007/eval",
        "round-x1/eval",
        "round-٣/eval",
        "round-01/train",
        "rounds-01/eval",
    ):
        assert parse_stage(name)[0] is None, name
    with pytest.raises(ValueError, match="unknown round step"):
        stage_name(3, "train")
    assert round_stages(100) == [f"round-100/{s}" for s in ("sample", "score", "pairs", "dpo", "eval", "report")]
    assert round_stages(0) == ["round-00/eval", "round-00/report"]
    assert all_stages(100)[-1] == "round-100/report"


def test_redoing_round_100_clears_round_100_and_not_round_10(tmp_path):
    layout = Layout(tmp_path)
    for k in (10, 100):
        layout.pairs(k).parent.mkdir(parents=True)
        layout.pairs(k).write_text("{}\n")
    assert layout.made_here("round-100/pairs") == [tmp_path / "round-100" / "pairs.jsonl"]
    assert layout.made_here("round-10/pairs") == [tmp_path / "round-10" / "pairs.jsonl"]
    assert layout.made_here("real") == [layout.real]
    assert layout.made_here("corpus") == []


def test_rounds_come_in_numeric_order_and_the_last_is_the_highest(tmp_path):
    (tmp_path / "campaign.json").write_text("{}")
    (tmp_path / "prompts.json").write_text(json.dumps({"train": [], "heldout": []}))
    (tmp_path / "round-notes").mkdir()  # not a round: ignored
    layout = Layout(tmp_path)
    for k in (0, 9, 11, 99, 100):
        layout.metrics(k).parent.mkdir(parents=True)
        rows = {"round": k}
        layout.metrics(k).write_text(json.dumps({"metrics": rows, "per_prompt_music": {"p": {"round": k}}}))
    assert layout.rounds() == [0, 9, 11, 99, 100]
    assert [r["round"] for r in load_rounds(tmp_path)] == [0, 9, 11, 99, 100]
    assert last_round_details(tmp_path)["per_prompt_music"] == {"p": {"round": 100}}
    markers = Markers(tmp_path)
    markers.mark(stage_name(100, "eval"))
    assert markers.done("round-100/eval") and not markers.done("round-10/eval")


NAMES = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda d, s: f"round-{d}/{s}", st.text("0123456789", max_size=5), st.sampled_from(["sample", "eval", "x", ""])
    ),
)


@FUZZ
@given(NAMES)
def test_any_name_parses_without_error_and_only_its_one_spelling_is_a_round(name):
    k, step = parse_stage(name)
    if k is None:
        assert step == name
    else:
        assert stage_name(k, step) == name  # a stage is read as a round only in the spelling the driver writes


def _run_all(runner: StageRunner, ran: list[str]) -> None:
    """Every stage, each writing the outputs its layout names (a stand-in body per stage, no campaign)."""
    for stage in runner.stages:

        def body(name: str = stage.name) -> dict:
            ran.append(name)
            for path in runner.layout.made_here(name):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(name) if path.suffix else (path.mkdir(exist_ok=True), (path / "out").write_text(name))
            return {"corpus": str(runner.layout.root)} if name == "corpus" else {}

        runner.run(stage.name, body)


def test_round_100_is_run_resumed_damaged_and_invalidated_by_its_own_number(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("{}\n")
    runner = StageRunner(Layout(tmp_path), 100)
    ran: list[str] = []
    _run_all(runner, ran)
    assert ran == all_stages(100) and len(ran) == 6 + 2 + 100 * 6
    ran.clear()
    _run_all(runner, ran)
    assert ran == []  # all done
    (tmp_path / "round-100" / "pairs.jsonl").write_text("other")
    (tmp_path / "round-10" / "eval" / "out").write_text("other")
    assert {s: state for s, state, _ in runner.status() if state != "done"} == {
        **{s: "stale" for s in all_stages(100)[all_stages(100).index("round-10/eval") + 1 :]},
        "round-10/eval": "damaged",
        "round-100/pairs": "damaged",
    }
    _run_all(runner, ran)
    # round 10's eval and everything after it; round 100's pairs were among them, redone from the start
    assert ran == all_stages(100)[all_stages(100).index("round-10/eval") :]
    ran.clear()
    (tmp_path / "round-100" / "pairs.jsonl").write_text("other")
    _run_all(runner, ran)
    assert ran == ["round-100/pairs", "round-100/dpo", "round-100/eval", "round-100/report"]
    assert (tmp_path / "round-10" / "pairs.jsonl").read_text() == "round-10/pairs"  # round 10 untouched
    ran.clear()
    shutil.rmtree(tmp_path / "round-100" / "artifacts")  # a leaf: only the report is redone
    _run_all(runner, ran)
    assert ran == ["round-100/report"]
