"""Each long-lived role killed in turn mid-work — a sampler, a scorer, a trainer rank, then the driver —
and the resumed campaign equals an uninterrupted one: every sample's id and text, every score.

The roles are found among the processes of the driver's own local Ray (its descendants), by the titles Ray
gives its actors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
import yaml

from tests.conftest import campaign_config, campaign_rows

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]


def _config(tmp: Path, parts: dict, out: Path) -> Path:
    path = campaign_config(
        tmp,
        parts["corpus"],
        out,
        rounds=2,
        unit_size=2,
        samples_per_prompt=16,
        use_judge=False,
        policy_from=str(parts["policy"]),
        evaluator_from=str(parts["evaluator"]),
    )
    cfg = yaml.safe_load(path.read_text())
    # a checkpoint every step, so the trainer is killed between two; music21's reader gives scoring some length
    cfg["dpo"].update({"checkpoint_every": 1, "epochs": 3, "require_parse": True})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _role_pids(driver: int, title: str) -> list[int]:
    """The processes of the driver's own Ray (its descendants) whose title Ray set to ``ray::<title>``."""
    found = []
    for child in psutil.Process(driver).children(recursive=True):
        try:
            if " ".join(child.cmdline()).startswith(f"ray::{title}"):
                found.append(child.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return found


def _wait_for(proc: subprocess.Popen, ready: callable, what: str) -> None:
    deadline = time.time() + 600
    while not ready():
        assert proc.poll() is None, f"the campaign ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _kill_role(proc: subprocess.Popen, title: str) -> None:
    pids = _role_pids(proc.pid, title)
    assert pids, f"no {title} process in the campaign's process group"
    os.kill(pids[0], signal.SIGKILL)


def test_each_role_killed_in_turn_resumes_to_the_uninterrupted_campaign(tiny_parts, tmp_path):
    calm_dir, killed_dir = tmp_path / "calm", tmp_path / "killed"
    calm = subprocess.run(
        CLI + ["campaign", "run", "--config", str(_config(tmp_path, tiny_parts, calm_dir))],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert calm.returncode == 0, calm.stderr[-4000:]

    proc = subprocess.Popen(
        CLI + ["campaign", "run", "--config", str(_config(tmp_path, tiny_parts, killed_dir))],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r1, r2 = killed_dir / "round-01", killed_dir / "round-02"
    try:
        _wait_for(proc, lambda: any((r1 / "samples" / "units").glob("unit-*.jsonl")), "round 1's first sample unit")
        _kill_role(proc, "SamplerActor")
        _wait_for(proc, lambda: any((r1 / "scores" / "units").glob("unit-*.jsonl")), "round 1's first score unit")
        _kill_role(proc, "ScorerActor")
        _wait_for(proc, lambda: (r1 / "dpo" / "checkpoints" / "latest").is_file(), "round 1's first DPO checkpoint")
        _kill_role(proc, "DPOWorker")
        _wait_for(proc, lambda: any((r2 / "samples" / "units").glob("unit-*.jsonl")), "round 2's first sample unit")
    finally:
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, mid-round
        for p in ray_processes:  # and the local Ray it started
            try:
                p.kill()
            except psutil.Error:
                pass
        proc.wait()
    assert not (killed_dir / "markers" / "round-02.sample.json").exists()

    resumed = subprocess.run(
        CLI + ["campaign", "resume", str(killed_dir)], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    markers = killed_dir / "markers"
    sample = json.loads((markers / "round-01.sample.json").read_text())
    score = json.loads((markers / "round-01.score.json").read_text())
    dpo = json.loads((markers / "round-01.dpo.json").read_text())
    # each kill really cost a unit or a group, and was recovered from
    assert sample["actor_failures"] >= 1 and score["actor_failures"] >= 1
    assert dpo["trainer/restarts"] == 1
    calm_dpo = json.loads((calm_dir / "markers" / "round-01.dpo.json").read_text())
    assert dpo["steps"] == calm_dpo["steps"] and dpo["train_loss"] == calm_dpo["train_loss"]

    def losses(folder: Path) -> list[tuple[int, float]]:
        client = mlflow.tracking.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        run_id = json.loads((folder / "round-01" / "run.json").read_text())["run_id"]
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))

    # every DPO step in MLflow once, with the uninterrupted campaign's value, those before the kill too
    assert losses(killed_dir) == losses(calm_dir) and len(losses(calm_dir)) == dpo["steps"]

    calm_rows, killed_rows = campaign_rows(calm_dir), campaign_rows(killed_dir)
    assert sorted(calm_rows) == sorted(killed_rows) and len(calm_rows) >= 8
    for path, rows in calm_rows.items():
        assert killed_rows[path] == rows, f"{path} differs from the uninterrupted campaign"
    versions = {r["policy_version"] for r in calm_rows["round-02/samples/samples.jsonl"]}
    assert versions == {1}  # round 2's candidates came from round 1's policy
