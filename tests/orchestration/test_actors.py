"""The actor pool on real Ray: a sampler actor killed mid-round costs time, not samples."""

from __future__ import annotations

import pytest
import ray
import torch

from models.notagen import NotaGenConfig, NotaGenForCausalLM
from models.sampling_config import SamplingConfig
from orchestration.actors import ActorPool, Resources, SamplerActor
from orchestration.ray_runtime import ensure_ray
from pipelines.campaign.plan import PromptSpec, round_samples


@pytest.fixture(scope="module")
def local_ray():
    ensure_ray(None)  # this process's local Ray (another test file may have started it already)


def _units(weights):
    prompt = PromptSpec(
        "Folk_Traditional, Irish_Solo melody", ("%Folk\n", "%Traditional, Irish\n", "%Solo melody\n"), 10
    )
    specs = [s.to_dict() for s in round_samples([prompt], 1, 12, campaign_seed=3)]
    return [(f"unit-{i:04d}", {"policy": [weights], "specs": specs[i : i + 2]}) for i in range(0, 12, 2)]


def _run(pool: ActorPool, units, kill_after_first: bool) -> dict[str, dict]:
    got: dict[str, dict] = {}

    def done(name, rows):
        if kill_after_first and not got:
            # the other actor is busy with its unit now: kill both (Ray restarts them; max_restarts)
            for actor in pool.actors:
                ray.kill(actor, no_restart=False)
        for r in rows:
            assert r["id"] not in got, "a sample was delivered twice"
            got[r["id"]] = r

    pool.run(units, "generate", done)
    return got


def test_killed_sampler_actor_still_yields_exactly_the_requested_samples(local_ray):
    torch.manual_seed(0)
    model = NotaGenForCausalLM(
        NotaGenConfig(patch_num_layers=1, char_num_layers=1, hidden_size=64, patch_length=64, dropout=0.0)
    )
    weights = ray.put({"config": model.config.to_dict(), "state_dict": model.state_dict()})
    units = _units(weights)
    sampling, one_cpu = SamplingConfig(max_patches=24, batch_size=2), Resources(cpus=1)

    calm = ActorPool(SamplerActor, 2, (sampling, one_cpu), one_cpu, max_restarts=2, max_unit_retries=2, name="calm")
    expected = _run(calm, units, kill_after_first=False)
    calm.shutdown()

    pool = ActorPool(SamplerActor, 2, (sampling, one_cpu), one_cpu, max_restarts=2, max_unit_retries=2, name="killed")
    got = _run(pool, units, kill_after_first=True)
    pool.shutdown()

    assert pool.stats.actor_failures >= 1 and pool.stats.retried >= 1  # a unit really was lost and redone
    assert sorted(got) == sorted(expected) and len(got) == 12
    assert all(got[k]["text"] == expected[k]["text"] for k in got)  # regenerated identically from its seed
