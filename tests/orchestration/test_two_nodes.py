"""A campaign of five rounds on a two-node Ray cluster (two ``ray start`` nodes on this machine, loopback
only) gives exactly the samples and scores of the same campaign on one node: there every role has cores of
its own, scoring runs alongside sampling and each round's weights are broadcast from the trainer into the
samplers on both nodes; on one node the roles share cores and take turns, and weights go through the object
store.

Samplers run on both nodes; round 1's samples are also checked against the plan's seeds generated here, in
one process (an oracle outside the campaign); the trainer group trains on the cluster every round.
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

from pipelines.campaign.plan import Prompts, round_samples
from tests.conftest import campaign_config, campaign_rows, planned_samples

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]


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


def _alive_nodes(address: str, env: dict) -> int:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 and probe.stdout.strip() else 0


def test_five_rounds_on_a_two_node_local_ray_cluster_equal_one_node(tiny_parts, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    # a test cluster on loopback: no token (Ray ≥ 2.5x asks every node and driver for one by default)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    nodes = [_ray_node(["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"], env)]
    try:
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
        deadline = time.time() + 180
        while _alive_nodes(address, env) < 2:
            assert time.time() < deadline, "the two-node cluster did not come up"
            time.sleep(0.5)
        out = tmp_path / "two-nodes"
        # two samplers (spread over the nodes), a scorer and the DPO worker fit the two 2-CPU nodes together
        cfg = campaign_config(
            tmp_path,
            tiny_parts["corpus"],
            out,
            unit_size=2,
            use_judge=False,
            num_samplers=2,
            num_scorers=1,
            rounds=5,
            policy_from=str(tiny_parts["policy"]),
            evaluator_from=str(tiny_parts["evaluator"]),
            weight_channel="broadcast",
        )
        run = subprocess.run(
            CLI + ["campaign", "run", "--config", str(cfg), "--ray-address", address],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        rows = [json.loads(x) for x in (out / "round-01" / "samples" / "samples.jsonl").read_text().splitlines()]
        assert len({r["node"] for r in rows}) == 2  # the two samplers ran on both nodes
        specs = round_samples(Prompts.from_dict(json.loads((out / "prompts.json").read_text())).train, 1, 8, 0)
        assert [r["text"] for r in rows] == planned_samples(tiny_parts["policy"], specs)  # as on one process
        dpos = [json.loads((out / "markers" / f"round-{k:02d}.dpo.json").read_text()) for k in range(1, 6)]
        assert all(d["steps"] >= 1 for d in dpos)  # the trainer group trained every round
        assert dpos[0]["trainer/start_seconds"] > 0 and all(d["trainer/start_seconds"] == 0 for d in dpos[1:])
        # each round's weights went from the trainer straight into both samplers, over a group formed once
        assert [(d["weights/transport"], d["weights/group_formed"]) for d in dpos] == [("gloo", 1)] + [("gloo", 0)] * 4
        eval3 = out / "round-03" / "eval" / "samples" / "samples.jsonl"
        evals = [json.loads(x) for x in eval3.read_text().splitlines()]
        assert evals and all(r["load_seconds"] < 0.05 and r["policy_version"] == 3 for r in evals)  # none fetched
        # samplers and scorers have cores of their own here: each unit was scored as soon as it was sampled
        scored = [json.loads((out / "markers" / f"round-{k:02d}.score.json").read_text()) for k in range(1, 6)]
        assert all(s["units_run"] == 0 and s["units"] > 0 for s in scored)

        # the same campaign on this process's own local Ray, its weights through the object store
        one = tmp_path / "one-node"
        cfg_one = Path(str(cfg).replace("two-nodes", "one-node"))
        text = cfg.read_text().replace(str(out), str(one))
        assert "weight_channel: broadcast" in text
        cfg_one.write_text(text.replace("weight_channel: broadcast", "weight_channel: object_store"))
        alone = subprocess.run(
            CLI + ["campaign", "run", "--config", str(cfg_one)], capture_output=True, text=True, cwd=REPO, timeout=900
        )
        assert alone.returncode == 0, alone.stderr[-4000:]
        two_rows, one_rows = campaign_rows(out), campaign_rows(one)
        assert sorted(two_rows) == sorted(one_rows) and len(two_rows) == 22  # 5 rounds × 4 files + round 0's 2
        for path, rows in one_rows.items():
            assert two_rows[path] == rows, f"{path} differs between two nodes and one"
    finally:
        # `ray start --block` leaves its raylet and GCS running for a long while after SIGTERM: a short grace,
        # then the whole process group of each node (raylet, GCS, workers) is killed
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
