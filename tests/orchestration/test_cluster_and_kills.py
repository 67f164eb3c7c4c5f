"""Kills, on one node and on two: a campaign resumes to exactly the samples and scores its plan asks for.

On one node (a local Ray the driver starts) the driver is killed mid-round; resumed, its samples are the ones
generated here, in this process, from the plan's seeds: an oracle independent of the campaign's actors and
work units. Its DPO and later rounds run calmly.

On a two-node Ray cluster (two ``ray start`` nodes on this machine, loopback only) the same campaign has each
long-lived role killed in turn — a sampler, a scorer, a trainer rank, then the driver with its trainer group
standing — and resumes to the one-node campaign: every sample's id and text, every score, every DPO step's
loss in MLflow. On the cluster every role has cores of its own, scoring runs alongside sampling and each
round's weights are broadcast from the trainer into the samplers on both nodes; on one node the roles share
cores and take turns, and weights go through the object store. The roles are found among the processes of the
cluster's own nodes, by the titles Ray gives its actors.

(One campaign on each side proves all of it: the driver kill, the role kills and the cluster each had a
campaign and a calm twin of their own before. Neither writes reports (``report_every: 0``): the smoke
campaign and the in-process driver tests check those.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml

from pipelines.campaign.plan import Prompts, round_samples
from tests.conftest import campaign_config, campaign_rows, planned_samples

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 2
SAMPLES = 8  # a prompt's candidates a round: its best and worst quarter make its pairs (at most 4)


def _config(tmp: Path, parts: dict, out: Path, channel: str) -> Path:
    path = campaign_config(
        tmp,
        parts["corpus"],
        out,
        rounds=ROUNDS,
        unit_size=2,
        samples_per_prompt=SAMPLES,
        use_judge=False,
        num_samplers=2,
        num_scorers=1,
        policy_from=str(parts["policy"]),
        evaluator_from=str(parts["evaluator"]),
        weight_channel=channel,
    )
    cfg = yaml.safe_load(path.read_text())
    # a checkpoint every step, so the trainer is killed between two; music21's reader gives scoring some length
    cfg["dpo"].update({"checkpoint_every": 1, "epochs": 3, "require_music21_reads": True})
    cfg["campaign"]["report_every"] = 0  # no pieces or report.html: seconds a round, and checked elsewhere
    path.write_text(yaml.safe_dump(cfg))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(args: list[str], env: dict) -> subprocess.Popen:
    """A ``ray start --block`` node in its own process group, so the test stops exactly what it started."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen(
        [ray_bin, "start", "--block", "--disable-usage-stats", "--num-cpus=2"] + args,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_nodes(address: str, env: dict, count: int, timeout: float = 180) -> None:
    """Until the cluster at ``address`` has ``count`` live nodes: one driver that asks again every half second
    (a driver started per question costs seconds of CPU each)."""
    probe = (
        "import time, ray\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        f"deadline = time.time() + {timeout}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    assert time.time() < deadline, 'timed out'\n"
        "    time.sleep(0.5)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=timeout + 60)
    assert done.returncode == 0, f"the {count}-node cluster did not come up: {done.stderr[-2000:]}"


def _cluster(env: dict) -> tuple[str, list[subprocess.Popen]]:
    address = f"127.0.0.1:{_free_port()}"
    nodes = [_ray_node(["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"], env)]
    host, port = address.split(":")
    deadline = time.time() + 120
    while True:  # the head's GCS accepts connections: the second node can join
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, "the head node did not come up"
            time.sleep(0.2)
    nodes.append(_ray_node([f"--address={address}"], env))
    _wait_for_nodes(address, env, 2)
    return address, nodes


def _stop(nodes: list[subprocess.Popen]) -> None:
    # `ray start --block` leaves its raylet and GCS running for a long while after SIGTERM: a short grace, then
    # the whole process group of each node (raylet, GCS, workers) is killed
    for node in nodes:
        os.killpg(node.pid, signal.SIGTERM)
    for node in nodes:
        try:
            node.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait()


def _role_pids(nodes: list[subprocess.Popen], title: str) -> list[int]:
    """The processes of this test's cluster (the nodes' descendants) whose title Ray set to ``ray::<title>``."""
    found = []
    for node in nodes:
        for child in psutil.Process(node.pid).children(recursive=True):
            try:
                if " ".join(child.cmdline()).startswith(f"ray::{title}"):
                    found.append(child.pid)
            except psutil.Error:  # gone meanwhile
                pass
    return found


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
    deadline = time.time() + 600
    while not ready():
        assert proc.poll() is None, f"the campaign ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _kill_role(nodes: list[subprocess.Popen], title: str) -> None:
    pids = _role_pids(nodes, title)
    assert pids, f"no {title} process on the cluster"
    os.kill(pids[0], signal.SIGKILL)


def _losses(folder: Path, k: int) -> list[tuple[int, float]]:
    client = mlflow.tracking.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    run_id = json.loads((folder / f"round-{k:02d}" / "run.json").read_text())["run_id"]
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))


def _marker(folder: Path, stage: str) -> dict:
    return json.loads((folder / "markers" / f"{stage.replace('/', '.')}.json").read_text())


@pytest.fixture(scope="module")
def one_node(tiny_parts, tmp_path_factory):
    """The campaign on a local Ray, its driver killed (with the Ray it started) once round 1 has sampled a unit,
    then resumed; how many of round 1's units it had when killed."""
    tmp = tmp_path_factory.mktemp("one-node")
    out = tmp / "one-node"
    proc = subprocess.Popen(
        CLI + ["campaign", "run", "--config", str(_config(tmp, tiny_parts, out, "object_store"))],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    units = out / "round-01" / "samples" / "units"
    try:
        _wait_for(proc, lambda: units.is_dir() and any(units.glob("unit-*.jsonl")), "round 1's first sample")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-round
        proc.wait()
    done_units = len(list(units.glob("unit-*.jsonl")))
    sampled = (out / "markers" / "round-01.sample.json").exists()
    resumed = subprocess.run(
        CLI + ["campaign", "resume", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return {"out": out, "units_when_killed": done_units, "sampled_when_killed": sampled}


def test_driver_killed_mid_round_resumes_to_the_planned_samples(one_node, tiny_parts):
    out = one_node["out"]
    assert 1 <= one_node["units_when_killed"] < 3 * SAMPLES // 2 and not one_node["sampled_when_killed"]
    rows = [json.loads(x) for x in (out / "round-01" / "samples" / "samples.jsonl").read_text().splitlines()]
    specs = round_samples(Prompts.from_dict(json.loads((out / "prompts.json").read_text())).train, 1, SAMPLES, 0)
    assert [r["id"] for r in rows] == [s.id for s in specs]  # every sample once, in plan order
    assert [r["text"] for r in rows] == planned_samples(tiny_parts["policy"], specs)  # as in one process
    assert (out / "markers" / f"round-{ROUNDS:02d}.eval.json").is_file()  # and the rest of the campaign ran


def test_a_two_node_campaign_with_every_role_killed_resumes_to_the_one_node_campaign(one_node, tiny_parts, tmp_path):
    one_dir, killed_dir = one_node["out"], tmp_path / "killed"

    # a test cluster on loopback: no token (Ray ≥ 2.5x asks every node and driver for one by default)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    address, nodes = _cluster(env)
    try:
        cfg = _config(tmp_path, tiny_parts, killed_dir, "broadcast")
        proc = subprocess.Popen(
            CLI + ["campaign", "run", "--config", str(cfg), "--ray-address", address],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        r1 = killed_dir / "round-01"
        try:
            _wait_for(proc, lambda: any((r1 / "samples" / "units").glob("unit-*.jsonl")), "round 1's first sample")
            _kill_role(nodes, "SamplerActor")
            _wait_for(proc, lambda: any((r1 / "scores" / "units").glob("unit-*.jsonl")), "round 1's first score")
            _kill_role(nodes, "ScorerActor")
            _wait_for(proc, lambda: (r1 / "dpo" / "checkpoints" / "latest").is_file(), "round 1's first checkpoint")
            _kill_role(nodes, "DPOWorker")
            eval_units = r1 / "eval" / "samples" / "units"
            _wait_for(proc, lambda: any(eval_units.glob("unit-*.jsonl")), "round 1's first evaluation sample")
        finally:
            # the driver, mid-round with its trainer group standing (its actors go with its job)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert not (killed_dir / "markers" / "round-01.eval.json").exists()
        resumed = subprocess.run(
            CLI + ["campaign", "resume", str(killed_dir), "--ray-address", address],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=900,
        )
        assert resumed.returncode == 0, resumed.stderr[-4000:]
    finally:
        _stop(nodes)

    # each kill really cost a unit or a group, and was recovered from
    sample, score = _marker(killed_dir, "round-01/sample"), _marker(killed_dir, "round-01/score")
    assert sample["actor_failures"] >= 1
    # the scorer died while scoring alongside sampling (the sample stage counts it) or in the score stage
    assert sample["scored_alongside/actor_failures"] + score.get("actor_failures", 0) >= 1
    dpo, one_dpo = _marker(killed_dir, "round-01/dpo"), _marker(one_dir, "round-01/dpo")
    assert dpo["trainer/restarts"] == 1
    assert dpo["steps"] == one_dpo["steps"] and dpo["train_loss"] == one_dpo["train_loss"]
    # every DPO step in MLflow once, with the one-node campaign's value (its DPO ran calmly), those before the
    # kill too
    assert _losses(killed_dir, 1) == _losses(one_dir, 1) and len(_losses(one_dir, 1)) == dpo["steps"]

    # everything sampled and scored equals the one-node campaign's (whose round 1 is the plan's, as generated
    # in this process: test_driver_killed_mid_round_resumes_to_the_planned_samples)
    one_rows, killed_rows = campaign_rows(one_dir), campaign_rows(killed_dir)
    assert sorted(one_rows) == sorted(killed_rows) and len(one_rows) == 2 + 4 * ROUNDS
    for path, rows in one_rows.items():
        assert killed_rows[path] == rows, f"{path} differs from the one-node campaign"
    assert {r["policy_version"] for r in one_rows["round-02/samples/samples.jsonl"]} == {1}

    # on the cluster: samplers on both nodes; the resumed driver started a trainer group of its own, which formed
    # its weight group and pushed round 2's weights straight into the samplers, which fetched nothing (a group
    # that stands is used again without forming: test_weight_sync); on one node the group stood from round 1
    last = [json.loads(x) for x in (killed_dir / "round-02" / "samples" / "samples.jsonl").read_text().splitlines()]
    assert len({r["node"] for r in last}) == 2
    dpos = [_marker(killed_dir, f"round-{k:02d}/dpo") for k in (1, 2)]
    assert [(d["weights/transport"], d["weights/group_formed"]) for d in dpos] == [("gloo", 1), ("gloo", 1)]
    assert dpos[1]["trainer/start_seconds"] > 0 and _marker(one_dir, "round-02/dpo")["trainer/start_seconds"] == 0
    eval2 = killed_dir / "round-02" / "eval" / "samples" / "samples.jsonl"
    evals = [json.loads(x) for x in eval2.read_text().splitlines()]
    assert evals and all(r["load_seconds"] < 0.05 and r["policy_version"] == 2 for r in evals)
    # samplers and scorers have cores of their own there: each unit of round 2 was scored as soon as sampled
    assert _marker(killed_dir, "round-02/score")["units_run"] == 0
