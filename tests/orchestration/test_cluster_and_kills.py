"""A two-node campaign with every role killed resumes to exactly the samples, scores and losses of one node.

On a two-node Ray cluster (two ``ray start`` nodes on this machine, loopback only) the smoke campaign's twin has
each long-lived role killed in turn — a sampler, a scorer, a trainer rank, then the driver with its trainer group
standing — and resumes to the smoke campaign (conftest's ``smoke``: one node, its driver killed mid-round, its
samples checked against generation in the test's process): every sample's id and text, every score, every DPO
step's loss in MLflow. On the cluster every role has cores of its own, scoring runs alongside sampling and each
round's weights are broadcast from the trainer into the samplers on both nodes; on one node the roles share
cores and take turns, and weights go through the object store. The roles are found among the processes of the
cluster's own nodes, by the titles Ray gives its actors.

The twin is also the second campaign on a corpus: it runs where the smoke campaign's folder is and names its
``campaign.cache_dir`` relatively, so it takes the policy, evaluator, judge and the corpus's music statistics
from the smoke campaign's cache (Ray's workers run elsewhere: the paths they get must not stay relative).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml

from tests.conftest import SMOKE_ROUNDS, campaign_rows, wait_for

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]


def _config(smoke: dict, out: Path) -> str:
    """The smoke campaign's config with its cache named relative to the smoke campaign's folder (where the twin
    runs) and weights broadcast; the file's name, relative to that folder."""
    cfg = yaml.safe_load(smoke["config"].read_text())
    cfg["dpo"]["checkpoint_every"] = 1  # so the trainer is killed between two (the smoke campaign's DPO keeps none)
    # no pieces or report.html: seconds a round, and the smoke campaign's are checked
    cfg["campaign"].update(
        {"out_dir": str(out), "cache_dir": "cache", "weight_channel": "broadcast", "report_every": 0}
    )
    (smoke["tmp"] / "two-node.yaml").write_text(yaml.safe_dump(cfg))
    return "two-node.yaml"


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


def test_a_two_node_campaign_with_every_role_killed_resumes_to_the_one_node_campaign(smoke_campaign, tmp_path):
    # the smoke campaign's parts, trained (on the other xdist worker, whose rounds run alongside this campaign)
    smoke, killed_dir = smoke_campaign.set_up(), tmp_path / "killed"

    # a test cluster on loopback: no token (Ray ≥ 2.5x asks every node and driver for one by default)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    address, nodes = _cluster(env)
    try:
        with open(tmp_path / "run.stderr", "w") as err:
            proc = subprocess.Popen(
                CLI + ["campaign", "run", "--config", _config(smoke, killed_dir), "--ray-address", address],
                cwd=smoke["tmp"],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            r1 = killed_dir / "round-01"
            try:
                wait_for(proc, lambda: any((r1 / "samples" / "units").glob("unit-*.jsonl")), "round 1's first sample")
                _kill_role(nodes, "SamplerActor")
                wait_for(proc, lambda: any((r1 / "scores" / "units").glob("unit-*.jsonl")), "round 1's first score")
                _kill_role(nodes, "ScorerActor")
                wait_for(proc, lambda: (r1 / "dpo" / "checkpoints" / "latest").is_file(), "round 1's first checkpoint")
                _kill_role(nodes, "DPOWorker")
                eval_units = r1 / "eval" / "samples" / "units"
                wait_for(proc, lambda: any(eval_units.glob("unit-*.jsonl")), "round 1's first evaluation sample")
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

    # the second campaign on this corpus: its set-up is the smoke campaign's, from the cache named relatively,
    # and what the workers were given is where it is
    first_run = (tmp_path / "run.stderr").read_text()
    assert first_run.count("trained before on this corpus with this config") == 3  # policy, evaluator, judge
    assert "music statistics of the corpus: measured before" in first_run
    policy = Path(_marker(killed_dir, "policy")["policy"])
    assert policy.is_absolute() and policy.is_relative_to(smoke["tmp"] / "cache")

    one_dir = smoke_campaign.result()["out"]  # the smoke campaign, finished

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
    # in the test's process: test_campaign.py's test_driver_killed_mid_round_resumes_to_the_planned_samples)
    one_rows, killed_rows = campaign_rows(one_dir), campaign_rows(killed_dir)
    assert sorted(one_rows) == sorted(killed_rows) and len(one_rows) == 2 + 4 * SMOKE_ROUNDS
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
