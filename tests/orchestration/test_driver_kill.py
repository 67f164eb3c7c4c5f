"""A campaign whose driver is killed mid-round resumes to exactly the samples its plan asks for.

The expected samples are generated here, in this process, from the plan's seeds: an oracle independent of
the campaign's actors and work units.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.campaign.plan import Prompts, round_samples
from tests.conftest import campaign_config, planned_samples

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]


def test_driver_killed_mid_round_resumes_to_the_planned_samples(tiny_parts, tmp_path):
    out = tmp_path / "killed"
    cfg = campaign_config(
        tmp_path,
        tiny_parts["corpus"],
        out,
        unit_size=2,
        samples_per_prompt=16,
        use_judge=False,
        policy_from=str(tiny_parts["policy"]),
        evaluator_from=str(tiny_parts["evaluator"]),
    )
    proc = subprocess.Popen(
        CLI + ["campaign", "run", "--config", str(cfg)],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    units = out / "round-01" / "samples" / "units"
    deadline = time.time() + 600
    while time.time() < deadline and not (units.is_dir() and any(units.glob("unit-*.jsonl"))):
        assert proc.poll() is None, "the campaign ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-round
    proc.wait()
    done_units = len(list(units.glob("unit-*.jsonl")))
    assert 1 <= done_units < 16 and not (out / "markers" / "round-01.sample.json").exists()

    resumed = subprocess.run(
        CLI + ["campaign", "resume", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    rows = [json.loads(x) for x in (out / "round-01" / "samples" / "samples.jsonl").read_text().splitlines()]

    specs = round_samples(Prompts.from_dict(json.loads((out / "prompts.json").read_text())).train, 1, 16, 0)
    assert [r["id"] for r in rows] == [s.id for s in specs]  # every sample once, in plan order
    assert [r["text"] for r in rows] == planned_samples(tiny_parts["policy"], specs)
    assert (out / "markers" / "round-01.eval.json").is_file()  # and the rest of the round ran
