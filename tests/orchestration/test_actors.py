"""The actor pool on real Ray: a sampler actor killed mid-round costs time, not samples; a sampler given
weights of another version than its unit's refuses the unit."""

from __future__ import annotations

import pytest
import ray
import torch

from models.notagen import NotaGenConfig, NotaGenForCausalLM
from models.sampling_config import SamplingConfig
from orchestration.actors import ActorPool, Resources, SamplerActor
from orchestration.ray_runtime import ensure_ray
from orchestration.weights import ObjectStoreChannel, PolicyWeights
from pipelines.campaign.plan import PromptSpec, round_samples
from tests.conftest import planned_samples

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out


@pytest.fixture(scope="module")
def local_ray():
    ensure_ray(None)  # this process's local Ray (another test file may have started it already)


def _specs() -> list:
    prompt = PromptSpec(
        "Folk_Traditional, Irish_Solo melody", ("%Folk\n", "%Traditional, Irish\n", "%Solo melody\n"), 10
    )
    return round_samples([prompt], 1, 12, campaign_seed=3)


def _units(handle):
    specs = [s.to_dict() for s in _specs()]
    return [(f"unit-{i:04d}", {"policy": handle, "specs": specs[i : i + 2]}) for i in range(0, 12, 2)]


def _run_killing_both_after_the_first_unit(pool: ActorPool, units) -> dict[str, dict]:
    got: dict[str, dict] = {}

    def done(name, rows):
        if not got:
            # the other actor is busy with its unit now: kill both (Ray restarts them; max_restarts)
            for actor in pool.actors:
                ray.kill(actor, no_restart=False)
        for r in rows:
            assert r["id"] not in got, "a sample was delivered twice"
            got[r["id"]] = r

    pool.run(units, "generate", done)
    return got


def _policy() -> NotaGenForCausalLM:
    torch.manual_seed(0)
    return NotaGenForCausalLM(
        NotaGenConfig(patch_num_layers=1, char_num_layers=1, hidden_size=64, patch_length=64, dropout=0.0)
    )


SAMPLING = SamplingConfig(max_patches=24, batch_size=2)


@pytest.fixture(scope="module")
def pool(local_ray):
    """Two sampler actors of a core each (their start-up is most of a test's time: one pool serves both)."""
    one_cpu = Resources(cpus=1)
    pool = ActorPool(SamplerActor, 2, (SAMPLING, one_cpu), one_cpu, max_restarts=2, max_unit_retries=2, name="samplers")
    yield pool
    pool.shutdown()


def test_killed_sampler_actor_still_yields_exactly_the_requested_samples(pool):
    units = _units(ObjectStoreChannel().publish(PolicyWeights.of(_policy(), 4), 4))

    # what the units ask for, generated here in one process (an oracle outside the pool)
    expected = {s.id: text for s, text in zip(_specs(), planned_samples(_policy(), _specs(), SAMPLING))}

    got = _run_killing_both_after_the_first_unit(pool, units)

    assert pool.stats.actor_failures >= 1 and pool.stats.retried >= 1  # a unit really was lost and redone
    assert sorted(got) == sorted(expected) and len(got) == 12
    assert all(got[k]["text"] == expected[k] for k in got)  # regenerated identically from its seed
    assert {r["policy_version"] for r in got.values()} == {4}  # every sample says which policy made it


def test_a_sampler_refuses_weights_of_another_version_than_its_unit(pool):
    channel = ObjectStoreChannel()
    handle = channel.publish(PolicyWeights.of(_policy(), 1), 1)
    stale = {"version": 2, "ref": handle["ref"]}  # a unit of round 2 handed round 1's weights
    with pytest.raises(ray.exceptions.RayTaskError, match="holds policy version 1, but the work is for version 2"):
        pool.run(_units(stale)[:1], "generate", lambda name, rows: None)
    assert pool.stats.retried == 0  # the unit's own error, not a lost actor: raised, never run again
