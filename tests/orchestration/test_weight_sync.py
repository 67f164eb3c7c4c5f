"""The broadcast weight channel on real Ray and DeepSpeed (gloo on CPU, the code NCCL runs on GPUs): each
round's policy goes from the trainer's rank 0 straight into the samplers' models, which then generate exactly
what the published weights generate, without fetching anything. A restarted sampler makes the driver form
the group again; a push that cannot happen (the trainer gone) leaves the samplers to the object store, and
the samples are the same; after two such failures in a row the channel stops pushing. The trainer keeps the
starting policy as its reference (``dpo.reference: initial``): round 2 starts ahead of it."""

from __future__ import annotations

import pytest
import ray
import torch

from models.sampling import Sampler
from models.sampling_config import SamplingConfig
from orchestration.actors import ActorPool, Resources, SamplerActor
from orchestration.dpo_worker import RoundJob, TrainerSpec
from orchestration.placement import Reservation
from orchestration.ray_runtime import ensure_ray
from orchestration.trainer_group import TrainerGroup
from orchestration.weight_sync import BroadcastChannel
from orchestration.weights import ObjectStoreChannel, PolicyWeights
from pipelines.campaign.plan import PromptSpec, round_samples
from pipelines.dpo.config import DPORoundConfig
from tests.conftest import tiny_policy, write_round_pairs

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out

SAMPLING = SamplingConfig(max_patches=16, batch_size=2)


@pytest.fixture(scope="module")
def local_ray():
    ensure_ray(None)


def _specs(k: int) -> list[dict]:
    lines = ("%Folk\n", "%Traditional, Irish\n", "%Solo melody\n")
    prompt = PromptSpec("Folk_Traditional, Irish_Solo melody", lines, 10)
    return [s.to_dict() for s in round_samples([prompt], k, 4, campaign_seed=1)]


def _generate(pool: ActorPool, handle, k: int) -> dict[str, dict]:
    specs = _specs(k)
    units = [(f"u{i}", {"policy": handle, "specs": specs[i : i + 2]}) for i in range(0, len(specs), 2)]
    got: dict[str, dict] = {}
    pool.run(units, "generate", lambda name, rows: got.update({r["id"]: r for r in rows}))
    return got


def _oracle(weights: PolicyWeights, k: int) -> dict[str, str]:
    """What the published weights generate, here in this process."""
    specs = _specs(k)
    samples = Sampler(weights.build(), SAMPLING).generate([list(s["lines"]) for s in specs], [s["seed"] for s in specs])
    return {s["id"]: x.text for s, x in zip(specs, samples)}


def _held(actor) -> tuple[int, dict[str, int], dict[str, torch.Tensor]]:
    def look(self):
        return self.version, dict(self.received), {k: v.clone() for k, v in self.sampler.model.state_dict().items()}

    return ray.get(actor.__ray_call__.remote(look))


def _restart(actor, timeout: float = 120.0) -> None:
    """Kill ``actor``'s process and wait until Ray has started its new one."""
    import os
    import time

    def pid():
        return ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=timeout)

    old = pid()
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pid() != old:
                return
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            pass
        assert time.monotonic() < deadline, "the sampler did not restart"
        time.sleep(0.2)


def test_weights_pushed_from_the_trainer_into_the_samplers_each_round(local_ray, tmp_path):
    policy0 = tmp_path / "policy0"
    tiny_policy().save_pretrained(policy0)
    # trained against the starting policy every round (reference: initial), which this group also checks
    cfg = DPORoundConfig(loss_type="dpop", batch_pairs=2, epochs=2, lr=1e-3, reference="initial")
    spec = TrainerSpec(cfg, "fp32", str(policy0), 0, reference_dir=str(policy0))
    group = TrainerGroup(spec, 1, Reservation(0.5, 0.0, True), threads=1)
    half = Resources(cpus=0.5, threads=1)
    pool = ActorPool(SamplerActor, 2, (SAMPLING, half), half, max_restarts=2, max_unit_retries=2, name="samplers")
    channel = BroadcastChannel(lambda: group.ranks[0] if group.ranks else None, lambda: list(pool.actors))
    try:
        _generate(pool, ObjectStoreChannel().publish(PolicyWeights.load(policy0, 0), 0), 0)  # both hold version 0

        summaries = []

        def round_(k: int) -> tuple[object, PolicyWeights]:
            job = RoundJob(
                k, write_round_pairs(tmp_path / f"pairs-{k}.jsonl", k), str(tmp_path / f"round-{k}"), "", None, True
            )
            summary, ref = group.train(job)
            summaries.append(summary)
            return channel.publish(ref, k), ray.get(ref)

        # round 1: the group is formed and the weights pushed; the samplers fetch nothing for their units
        handle, weights = round_(1)
        assert channel.last["weights/transport"] == "gloo" and channel.last["weights/group_formed"] == 1
        for actor in pool.actors:
            version, received, state = _held(actor)
            assert version == 1 and received == {"pushed": 1, "fetched": 1}  # version 0 came from the store
            assert all(torch.equal(state[k], v) for k, v in weights.state_dict.items())
        rows = _generate(pool, handle, 1)
        assert {i: r["text"] for i, r in rows.items()} == _oracle(weights, 1)
        assert {r["policy_version"] for r in rows.values()} == {1}
        assert all(r["load_seconds"] < 0.05 for r in rows.values())  # nothing to load: the version was there
        assert all(_held(a)[1]["fetched"] == 1 for a in pool.actors)

        # a sampler restarted (a new process, the same actor): round 2 forms the group again with it
        _restart(pool.actors[1])
        handle, weights = round_(2)
        assert channel.last["weights/transport"] == "gloo" and channel.last["weights/group_formed"] == 1
        assert [_held(a)[1] for a in pool.actors] == [{"pushed": 2, "fetched": 1}, {"pushed": 1, "fetched": 0}]
        assert {i: r["text"] for i, r in _generate(pool, handle, 2).items()} == _oracle(weights, 2)
        # the reference stays the starting policy: round 2 begins with the margin round 1 ended near, not at 0
        one, two = summaries
        assert one["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)
        assert two["first/rewards/margins"] > 0.5 * one["rewards/margins"] > 0

        # round 3 with the same members: the group stands and is only used
        handle, weights = round_(3)
        assert channel.last["weights/group_formed"] == 0 and all(_held(a)[0] == 3 for a in pool.actors)

        # the trainer gone before its weights were pushed: the samplers fetch them from the object store
        job = RoundJob(4, write_round_pairs(tmp_path / "pairs-4.jsonl", 4), str(tmp_path / "round-4"), "", None, True)
        _, ref = group.train(job)
        ray.kill(group.ranks[0], no_restart=True)
        handle = channel.publish(ref, 4)
        assert channel.last["weights/transport"] == "failed"
        rows = _generate(pool, handle, 4)
        assert {i: r["text"] for i, r in rows.items()} == _oracle(ray.get(ref), 4)
        assert [_held(a)[1]["fetched"] for a in pool.actors] == [2, 1]
        # a second failure in a row: pushing stops for the campaign (a transport that cannot run would
        # otherwise cost its timeout every round), and the object store carries every later version
        channel.publish(ref, 4)
        assert channel.last["weights/transport"] == "failed" and channel.failures == 2
        channel.publish(ref, 4)
        assert channel.last["weights/transport"] == "off"
    finally:
        pool.shutdown()
        group.shutdown()
