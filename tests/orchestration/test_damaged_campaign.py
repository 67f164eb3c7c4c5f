"""A campaign folder damaged after the fact (cut-short unit, deleted pair dataset, garbage metrics, marker or
prompts, a stage's marker deleted) is reported by `campaign status` and repaired by `campaign resume` to the
same round table as the undamaged run: each damaged stage is redone with everything downstream of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import campaign_config

STAGE = re.compile(r"^(corpus|policy|evaluator|judge|prompts|real|round-\d\d/\w+)$")
CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]


def clampdpo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=REPO, timeout=900)


def table(folder: Path) -> str:
    rows = [json.loads(f.read_text())["metrics"] for f in sorted(folder.glob("round-*/metrics.json"))]
    return json.dumps(rows, sort_keys=True)  # NaN compares equal as text


@pytest.fixture(scope="module")
def whole(tiny_parts, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("damage")
    out = tmp / "whole"
    cfg = campaign_config(
        tmp,
        tiny_parts["corpus"],
        out,
        unit_size=2,
        samples_per_prompt=8,
        eval_samples_per_prompt=4,
        use_judge=False,
        policy_from=str(tiny_parts["policy"]),
        evaluator_from=str(tiny_parts["evaluator"]),
    )
    res = clampdpo("campaign", "run", "--config", str(cfg))
    assert res.returncode == 0, res.stderr[-4000:]
    return {"out": out, "tmp": tmp, "table": table(out)}


def _copy(whole: dict, name: str) -> Path:
    dst = whole["tmp"] / name
    shutil.copytree(whole["out"], dst)
    return dst


def _status(folder: Path) -> dict[str, str]:
    res = clampdpo("campaign", "status", str(folder))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    rows = {"_text": res.stdout}
    for line in res.stdout.splitlines():
        stage, _, rest = line[4:].partition(" ")  # "  ✓ stage   state  detail"
        if line[:2] == "  " and line[3:4] == " " and STAGE.match(stage):
            rows[stage] = rest.strip()
    return rows


def _resume_equals_whole(folder: Path, whole: dict) -> None:
    res = clampdpo("campaign", "resume", str(folder))
    assert res.returncode == 0, res.stderr[-4000:]
    assert table(folder) == whole["table"]
    after = _status(folder)
    assert all(v.startswith("done") for k, v in after.items() if not k.startswith("_")), after["_text"]


def test_damage_in_a_round_is_reported_and_resume_restores_the_round_table(whole):
    d = _copy(whole, "round-damage")
    unit = d / "round-01" / "samples" / "units" / "unit-0001.jsonl"
    unit.write_bytes(unit.read_bytes()[:-40])  # cut short, its markers intact
    (d / "round-01" / "pairs.jsonl").unlink()
    (d / "round-01" / "metrics.json").write_text("{ garbage")
    rows = _status(d)
    assert rows["round-01/sample"].startswith("damaged") and "unit-0001.jsonl changed" in rows["round-01/sample"]
    assert rows["round-01/pairs"].startswith("damaged") and "pairs.jsonl is missing" in rows["round-01/pairs"]
    assert rows["round-01/eval"].startswith("damaged") and "metrics.json" in rows["round-01/eval"]
    assert rows["round-01/score"].startswith("stale") and "campaign resume" in rows["_text"]
    assert "unreadable:" in rows["_text"] and rows["round-00/eval"].startswith("done")
    _resume_equals_whole(d, whole)


def test_garbage_marker_and_a_deleted_marker_redo_their_stage_and_all_after(whole):
    d = _copy(whole, "marker-damage")
    (d / "markers" / "round-01.score.json").write_text("\x00\x01 not json")
    rows = _status(d)
    assert rows["round-01/score"].startswith("damaged") and "marker" in rows["round-01/score"]
    _resume_equals_whole(d, whole)
    (d / "markers" / "round-01.dpo.json").unlink()  # redoing DPO must not keep the old eval as done
    rows = _status(d)
    assert rows["round-01/dpo"].startswith("next") and rows["round-01/eval"].startswith("stale")
    _resume_equals_whole(d, whole)


def test_garbage_prompts_redo_everything_from_the_prompts_on(whole):
    d = _copy(whole, "prompts-damage")
    (d / "prompts.json").write_text("[")
    rows = _status(d)
    assert rows["prompts"].startswith("damaged") and rows["real"].startswith("stale")
    _resume_equals_whole(d, whole)
