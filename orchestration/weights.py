"""Policy weights on the wire between the campaign's roles, each copy stamped with the round that made it.

The trainer group publishes the policy after round k as version k; samplers receive it for round k+1's
candidates and for round k's evaluation. A unit of work names the version it must be generated with, and a
sampler holding another version refuses the unit rather than generate from the wrong policy (a stale copy
after a restart, a reordered message): ``StaleWeights``.

Channels share one interface (``WeightChannel``). The Ray object store (here) serves CPU and any cluster:
the weights are put once and every sampler on a node reads the same shared copy. The broadcast channel
(``orchestration.weight_sync``) pushes each version from the trainer's rank 0 into the samplers' models
(NCCL, CUDA IPC or gloo) and keeps the object store underneath for the samplers the push missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from models.notagen import NotaGenForCausalLM


class StaleWeights(RuntimeError):
    """A role was asked to work with a policy version other than the one it holds."""


@dataclass(frozen=True)
class PolicyWeights:
    """One published policy: the round that made it (0: the starting policy), its config and weights."""

    version: int
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: NotaGenForCausalLM, version: int, state: dict[str, torch.Tensor] | None = None) -> PolicyWeights:
        """The weights of ``model`` (or ``state``, e.g. ZeRO-3's gathered copy), as fp32 CPU tensors of their own.

        Copied: under DeepSpeed the parameters are views into one flat buffer, and pickling a view carries its
        whole buffer, once per tensor (measured: 1-2 s to send an 11 MB policy, instead of a few ms).
        """
        state = model.state_dict() if state is None else state
        return cls(
            version,
            model.config.to_dict(),
            {k: v.detach().to(device="cpu", dtype=torch.float32, copy=True) for k, v in state.items()},
        )

    @classmethod
    def load(cls, policy_dir: str | Path, version: int) -> PolicyWeights:
        """A saved policy folder as version ``version`` (a resumed campaign's last finished round)."""
        from models.config import load_model

        return cls.of(load_model(policy_dir), version)

    def build(self) -> NotaGenForCausalLM:
        from models.notagen import NotaGenConfig, NotaGenForCausalLM

        model = NotaGenForCausalLM(NotaGenConfig.from_dict(self.config))
        model.load_state_dict(self.state_dict)
        return model


def expect_version(held: int | None, wanted: int, role: str) -> None:
    """Refuse work for a policy version this role does not hold."""
    if held != wanted:
        raise StaleWeights(f"{role} holds policy version {held}, but the work is for version {wanted}")


class WeightChannel(Protocol):
    """How a published policy reaches the samplers: ``publish`` on the driver, ``receive`` in a sampler."""

    def publish(self, weights: Any, version: int) -> Any:
        """A handle the driver sends with every unit of ``version`` (small: never the weights themselves)."""

    def receive(self, handle: Any) -> PolicyWeights:
        """The weights a handle names (inside a sampler)."""


class ObjectStoreChannel:
    """Weights through Ray's object store: put once by the driver (or returned by the trainer's rank 0, which
    makes the driver their owner, so they outlive a trainer that dies), read by every sampler."""

    def publish(self, weights: Any, version: int) -> Any:
        import ray

        ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(weights)
        # nested in a list, so Ray passes the reference itself and the sampler fetches only when it must
        return {"version": version, "ref": [ref]}

    def receive(self, handle: Any) -> PolicyWeights:
        import ray

        weights = ray.get(handle["ref"][0])
        expect_version(weights.version, handle["version"], "the object store")
        return weights
