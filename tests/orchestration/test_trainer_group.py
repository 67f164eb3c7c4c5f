"""The long-lived trainer group on real Ray and DeepSpeed: three gloo ranks, an engine built once, trained for
two rounds; the margin rises, the reference moves with the rounds, weights come back with their version, a
round from another version is refused, and ZeRO-3 trains as stage 1 does.
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


def _dpo(zero_stage: int) -> DPORoundConfig:
    return DPORoundConfig(
        loss_type="dpop", beta=0.1, dpop_lambda=10.0, batch_pairs=2, epochs=2, lr=1e-3, zero_stage=zero_stage
    )


@pytest.fixture(scope="module")
def three_ranks(local_ray, tmp_path_factory):
    """Three gloo ranks at ZeRO stage 1 trained for rounds 1 and 2 on one engine; then asked for a round from
    a version they do not hold (the group's start-up is most of a test's time: one group serves three)."""
    tmp = tmp_path_factory.mktemp("three-ranks")
    policy0 = tmp / "policy0"
    tiny_policy().save_pretrained(policy0)
    spec = TrainerSpec(dpo=_dpo(1), precision="fp32", policy_dir=str(policy0), version=0, reference_dir=None)
    group = TrainerGroup(spec, 3, Reservation(cpus=0.4, gpus=0.0, colocated=True), threads=1)
    try:
        summaries, weights = [], []
        for k in (1, 2):
            summary, ref = group.train(
                RoundJob(k, write_round_pairs(tmp / f"pairs-{k}.jsonl", k), str(tmp / f"round-{k}"), "", None)
            )
            summaries.append(summary)
            weights.append(ray.get(ref))
        pids = group.pids()
        wrong = RoundJob(5, write_round_pairs(tmp / "pairs-5.jsonl", 5), str(tmp / "round-5"), "", None)
        try:
            ray.get(group.ranks[0].train_round.options(num_returns=2).remote(wrong, 4)[0])
            refused = None
        except ray.exceptions.RayTaskError as err:
            refused = str(err)
    finally:
        group.shutdown()
    return {"tmp": tmp, "summaries": summaries, "weights": weights, "pids": pids, "refused": refused}


def test_three_ranks_train_two_rounds_on_one_engine(three_ranks):
    tmp, (one, two), weights = three_ranks["tmp"], three_ranks["summaries"], three_ranks["weights"]
    # 8 pairs over 3 ranks of 2: DistributedSampler pads to 9, so 2 micro-batches a rank per epoch, 2 epochs
    assert one["world_size"] == 3 and one["steps"] == 4 and two["steps"] == 4
    assert one["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)  # the policy starts as its reference
    assert one["rewards/margins"] > one["first/rewards/margins"]  # and learns the pairs
    # round 2's reference is round 1's policy, held by the engine: its margins start at 0 again
    assert two["first/rewards/margins"] == pytest.approx(0.0, abs=0.01)
    assert two["logps/chosen"] > one["logps/chosen"]  # while the policy keeps moving the same way

    assert [w.version for w in weights] == [1, 2] and len(set(three_ranks["pids"])) == 3
    saved = load_model(tmp / "round-2" / "policy").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in weights[1].state_dict.items())  # the published = the saved
    assert json.loads((tmp / "round-2" / "dpo_summary.json").read_text())["steps"] == 4
    key = "model.char_decoder.wte.weight"
    assert not torch.equal(weights[0].state_dict[key], weights[1].state_dict[key])  # round 2 moved the policy on


def test_a_trainer_refuses_a_round_from_another_policy_version(three_ranks):
    assert three_ranks["refused"] and "holds policy version 2, but the work is for version 4" in three_ranks["refused"]
    assert not (three_ranks["tmp"] / "round-5").exists()  # refused before it wrote anything
    assert PolicyWeights.load(three_ranks["tmp"] / "policy0", 0).version == 0


def test_zero3_on_three_ranks_trains_as_stage_1_and_its_gathered_weights_are_broadcast(three_ranks, tmp_path):
    from models.sampling_config import SamplingConfig
    from orchestration.actors import Resources, SamplerActor
    from orchestration.weight_sync import BroadcastChannel

    one, w1 = three_ranks["summaries"][0], three_ranks["weights"][0]  # round 1 at stage 1, the same pairs
    policy0 = three_ranks["tmp"] / "policy0"
    spec = TrainerSpec(dpo=_dpo(3), precision="fp32", policy_dir=str(policy0), version=0, reference_dir=None)
    resources = Resources(cpus=0.2, threads=1)
    sampler = ray.remote(SamplerActor).options(**resources.options()).remote(SamplingConfig(), resources)
    group = TrainerGroup(spec, 3, Reservation(cpus=0.4, gpus=0.0, colocated=True), threads=1)
    try:
        out = tmp_path / "zero3"
        job = RoundJob(1, write_round_pairs(tmp_path / "pairs-1.jsonl", 1), str(out), "", None, keep_weights=True)
        three, ref = group.train(job)
        channel = BroadcastChannel(lambda: group.ranks[0], lambda: [sampler])
        channel.publish(ref, 1)
        assert channel.last["weights/transport"] == "gloo"
        w3 = ray.get(ref)
        held = ray.get(sampler.__ray_call__.remote(lambda self: (self.version, self.sampler.model.state_dict())))
    finally:
        group.shutdown()
        ray.kill(sampler)
    assert three["world_size"] == 3 and three["steps"] == one["steps"] == 4
    # ZeRO-3 shards parameters, gradients and optimizer state over the ranks: the same training, to rounding
    for key in ("first/rewards/margins", "rewards/margins", "loss", "logps/chosen"):
        assert three[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    # sharded reductions round differently: measured 6e-6 at most (an attention bias whose gradient is ~0, which
    # Adam scales up), where 4 steps at lr 1e-3 move weights by ~1e-3
    start = load_model(policy0).state_dict()
    assert max(float((w1.state_dict[k] - v).abs().max()) for k, v in start.items()) > 1e-3
    assert all(torch.allclose(w3.state_dict[k], v, rtol=0, atol=2e-5) for k, v in w1.state_dict.items())
    # rank 0 gathered the shards into the whole policy: the one it saved, and the one the sampler received
    saved = load_model(out / "policy").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in w3.state_dict.items())
    version, state = held
    assert version == 1 and all(torch.equal(state[k], v) for k, v in w3.state_dict.items())
