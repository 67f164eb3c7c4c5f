"""The long-lived trainer group on real Ray and DeepSpeed: two gloo ranks, an engine built once, trained for
two rounds; the margin rises, the reference moves with the rounds, weights come back with their version.
"""

from __future__ import annotations

import json

import pytest
import ray
import torch

from models.config import load_model
from orchestration.dpo_worker import RoundJob, TrainerSpec
from orchestration.placement import Reservation
from orchestration.ray_runtime import ensure_ray
from orchestration.trainer_group import TrainerGroup
from orchestration.weights import PolicyWeights
from pipelines.dpo.config import DPORoundConfig
from tests.conftest import tiny_policy, write_round_pairs

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out


@pytest.fixture(scope="module")
def local_ray():
    ensure_ray(None)


def test_two_ranks_train_two_rounds_on_one_engine(local_ray, tmp_path):
    policy0 = tmp_path / "policy0"
    tiny_policy().save_pretrained(policy0)
    cfg = DPORoundConfig(loss_type="dpop", beta=0.1, dpop_lambda=10.0, batch_pairs=2, epochs=2, lr=1e-3)
    spec = TrainerSpec(dpo=cfg, precision="fp32", policy_dir=str(policy0), version=0, reference_dir=None)
    group = TrainerGroup(spec, 2, Reservation(cpus=0.5, gpus=0.0, colocated=True), threads=1)
    try:
        summaries, weights = [], []
        for k in (1, 2):
            out = tmp_path / f"round-{k}"
            summary, ref = group.train(
                RoundJob(k, write_round_pairs(tmp_path / f"pairs-{k}.jsonl", k), str(out), "", None)
            )
            summaries.append(summary)
            weights.append(ray.get(ref))
        pids = group.pids()
    finally:
        group.shutdown()

    one, two = summaries
    # 8 pairs over 2 ranks of 2 pairs: 2 steps an epoch, 2 epochs
    assert one["world_size"] == 2 and one["steps"] == 4 and two["steps"] == 4
    assert one["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)  # the policy starts as its reference
    assert one["rewards/margins"] > one["first/rewards/margins"]  # and learns the pairs
    # round 2's reference is round 1's policy, held by the engine: its margins start at 0 again
    assert two["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)
    assert two["logps/chosen"] > one["logps/chosen"]  # while the policy keeps moving the same way

    assert [w.version for w in weights] == [1, 2] and len(set(pids)) == 2
    saved = load_model(tmp_path / "round-2" / "policy").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in weights[1].state_dict.items())  # the published = the saved
    assert json.loads((tmp_path / "round-2" / "dpo_summary.json").read_text())["steps"] == 4
    key = "model.char_decoder.wte.weight"
    assert not torch.equal(weights[0].state_dict[key], weights[1].state_dict[key])  # round 2 moved the policy on


def test_a_trainer_refuses_a_round_from_another_policy_version(local_ray, tmp_path):
    policy0 = tmp_path / "policy0"
    tiny_policy().save_pretrained(policy0)
    spec = TrainerSpec(DPORoundConfig(batch_pairs=2), "fp32", str(policy0), 3, None)
    group = TrainerGroup(spec, 1, Reservation(cpus=1.0, gpus=0.0, colocated=False), threads=1)
    try:
        job = RoundJob(5, write_round_pairs(tmp_path / "pairs.jsonl", 5), str(tmp_path / "r5"), "", None)
        with pytest.raises(ray.exceptions.RayTaskError, match="holds policy version 3, but the work is for version 4"):
            ray.get(group.ranks[0].train_round.options(num_returns=2).remote(job, 4)[0])
    finally:
        group.shutdown()
    assert PolicyWeights.load(policy0, 0).version == 0


def test_with_the_initial_reference_round_two_starts_ahead_of_it(local_ray, tmp_path):
    policy0 = tmp_path / "policy0"
    tiny_policy().save_pretrained(policy0)
    cfg = DPORoundConfig(loss_type="dpop", batch_pairs=2, epochs=2, lr=1e-3, reference="initial")
    spec = TrainerSpec(cfg, "fp32", str(policy0), 0, reference_dir=str(policy0))
    group = TrainerGroup(spec, 1, Reservation(cpus=1.0, gpus=0.0, colocated=False), threads=1)
    try:
        one, _ = group.train(RoundJob(1, write_round_pairs(tmp_path / "p1.jsonl", 1), str(tmp_path / "r1"), "", None))
        two, _ = group.train(RoundJob(2, write_round_pairs(tmp_path / "p2.jsonl", 2), str(tmp_path / "r2"), "", None))
    finally:
        group.shutdown()
    # the reference stays the starting policy: round 2 begins with the margin round 1 ended near, not at 0
    assert one["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)
    assert two["first/rewards/margins"] > 0.5 * one["rewards/margins"] > 0


def _train_once(tmp_path, stage: int, world: int, sampler=None) -> tuple[dict, PolicyWeights]:
    """One round on ``world`` ranks at ZeRO ``stage``; with ``sampler``, the weights are also broadcast to it."""
    from orchestration.weight_sync import BroadcastChannel

    policy0 = tmp_path / "policy0"
    if not policy0.is_dir():
        tiny_policy().save_pretrained(policy0)
    cfg = DPORoundConfig(
        loss_type="dpop", beta=0.1, dpop_lambda=10.0, batch_pairs=2, epochs=2, lr=1e-3, zero_stage=stage
    )
    spec = TrainerSpec(dpo=cfg, precision="fp32", policy_dir=str(policy0), version=0, reference_dir=None)
    group = TrainerGroup(spec, world, Reservation(cpus=0.4, gpus=0.0, colocated=True), threads=1)
    try:
        out = tmp_path / f"zero{stage}"
        job = RoundJob(
            1, write_round_pairs(tmp_path / "pairs-1.jsonl", 1), str(out), "", None, keep_weights=sampler is not None
        )
        summary, ref = group.train(job)
        if sampler is not None:
            channel = BroadcastChannel(lambda: group.ranks[0], lambda: [sampler])
            channel.publish(ref, 1)
            assert channel.last["weights/transport"] == "gloo"
        return summary, ray.get(ref)
    finally:
        group.shutdown()


def test_zero3_on_three_ranks_trains_as_stage_1_and_its_gathered_weights_are_broadcast(local_ray, tmp_path):
    from models.sampling_config import SamplingConfig
    from orchestration.actors import Resources, SamplerActor

    one, w1 = _train_once(tmp_path, 1, 3)
    resources = Resources(cpus=0.2, threads=1)
    sampler = ray.remote(SamplerActor).options(**resources.options()).remote(SamplingConfig(), resources)
    try:
        three, w3 = _train_once(tmp_path, 3, 3, sampler)
        held = ray.get(sampler.__ray_call__.remote(lambda self: (self.version, self.sampler.model.state_dict())))
    finally:
        ray.kill(sampler)
    # 8 pairs over 3 ranks of 2: DistributedSampler pads to 9, so 2 micro-batches a rank per epoch, 2 epochs
    assert one["world_size"] == 3 and one["steps"] == three["steps"] == 4
    # ZeRO-3 shards parameters, gradients and optimizer state over the ranks: the same training, to rounding
    for key in ("first/rewards/margins", "rewards/margins", "loss", "logps/chosen"):
        assert three[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    # sharded reductions round differently: measured 6e-6 at most (an attention bias whose gradient is ~0, which
    # Adam scales up), where 4 steps at lr 1e-3 move weights by ~1e-3
    start = load_model(tmp_path / "policy0").state_dict()
    assert max(float((w1.state_dict[k] - v).abs().max()) for k, v in start.items()) > 1e-3
    assert all(torch.allclose(w3.state_dict[k], v, rtol=0, atol=2e-5) for k, v in w1.state_dict.items())
    # rank 0 gathered the shards into the whole policy: the one it saved, and the one the sampler received
    saved = load_model(tmp_path / "zero3" / "policy").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in w3.state_dict.items())
    version, state = held
    assert version == 1 and all(torch.equal(state[k], v) for k, v in w3.state_dict.items())
