"""The broadcast weight channel on Ray: the trainer's rank 0 pushes each new policy into every sampler's model.

``BroadcastChannel`` is the driver's side. After each DPO round it forms (once, and again only when a member
changed: a restarted sampler, a new trainer group) a weight group of the trainer's rank 0 and every sampler
(``orchestration.weight_group``: NCCL, CUDA IPC or gloo, by where the members hold their weights) and sends
the round's weights through it, straight from the trainer's memory into the samplers' models. The samplers
then hold version k before any unit of version k reaches them.

The object store stays underneath: the trainer still returns its weights to the driver (who owns them past
the trainer's death), and a sampler that was not in the group (restarted, or the push failed) fetches them
from there when its first unit of version k comes. A push that fails therefore costs time, never a sample:
both paths give the same weights.

``WeightMember`` is what the two actor classes (``DPOWorker``, ``SamplerActor``) mix in to join a group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import ray

from orchestration.weight_group import CollectiveGroup, Manifest, Place, import_ipc, place_of, transport_for
from orchestration.weights import ObjectStoreChannel

log = logging.getLogger(__name__)


class WeightMember:
    """A Ray actor's membership of a weight group; the actor sets ``weights_device`` (where its model is)."""

    weights_device: Any = "cpu"
    _group: Any = None  # a CollectiveGroup, or the word "ipc" (no group object: handles travel through Ray)
    _group_id: str | None = None

    def weights_place(self) -> Place:
        return place_of(self.weights_device, ray.get_runtime_context().get_node_id())

    def weight_group_id(self) -> str | None:
        """The group this process is in (None in a new or restarted actor: the driver forms the group again)."""
        return self._group_id

    def join_weights(
        self, host: str, port: int, rank: int, world: int, transport: str, group_id: str, timeout_s: float
    ) -> None:
        """Leave any earlier group and join ``group_id`` as ``rank`` of ``world`` (every member at once)."""
        self.leave_weights()
        if transport == "ipc":
            self._group = "ipc"
        else:
            if transport == "nccl":
                import torch

                # NCCL binds the current device; Ray shows each actor its GPU as device 0 ("cuda" names none)
                torch.cuda.set_device(torch.device(self.weights_device).index or 0)
            self._group = CollectiveGroup(
                transport,
                host,
                port,
                rank,
                world,
                self.weights_device,
                timeout_s,
                bind=ray.util.get_node_ip_address(),
            )
        self._group_id = group_id

    def leave_weights(self) -> None:
        if isinstance(self._group, CollectiveGroup):
            self._group.close()
        self._group, self._group_id = None, None

    def _receive_state(self, manifest: Manifest, handles: list[Any] | None) -> dict[str, Any]:
        """Receive the weights ``manifest`` describes (through the group, or from ``handles`` under ipc)."""
        if self._group == "ipc":
            if handles is None:
                raise RuntimeError("an ipc weight group needs the sender's handles")
            return manifest.unpack(import_ipc(handles, self.weights_device))
        if not isinstance(self._group, CollectiveGroup):
            raise RuntimeError("this actor is in no weight group")
        return self._group.receive(manifest)


class BroadcastChannel:
    """Weights pushed from the trainer's rank 0 (``source()``, None while there is no trainer) into the
    samplers (``receivers()``) when published; the object store keeps the copy for anyone the push missed."""

    def __init__(
        self,
        source: Callable[[], Any],
        receivers: Callable[[], list[Any]],
        timeout_s: float = 120.0,
        max_failures: int = 2,
    ):
        self.source, self.receivers, self.timeout_s = source, receivers, timeout_s
        self.max_failures = max_failures
        self.store = ObjectStoreChannel()
        self._members: list[str] | None = None  # actor ids of the group's members, rank 0 first
        self._group_id: str | None = None
        self.transport: str | None = None
        self.failures = 0  # in a row; at max_failures, pushing stops for the campaign
        self.last: dict[str, Any] = {}  # the latest push, as the DPO stage records it

    def publish(self, weights: Any, version: int) -> Any:
        handle = self.store.publish(weights, version)
        source, receivers = self.source(), self.receivers()
        self.last = {}
        if self.failures >= self.max_failures:
            self.last = {"weights/transport": "off"}
            return handle
        if source is None or not receivers:
            return handle
        start = time.perf_counter()
        try:
            formed = self._form(source, receivers)
            if self.transport is not None:
                self._push(source, receivers, version)
            self.last = {"weights/transport": self.transport or "none", "weights/group_formed": int(formed)}
            self.failures = 0
        except ray.exceptions.RayError as err:
            self.failures += 1
            # a push that keeps failing (a transport this cluster cannot run) would cost its timeout every round
            stop = self.failures >= self.max_failures
            log.warning(
                "policy version %d: pushing it to the samplers failed (%s: %s); they fetch it from the object store%s",
                version,
                type(err).__name__,
                str(err).splitlines()[0][:200] if str(err) else "",
                f"; {self.failures} failures in a row: pushing stops for this campaign" if stop else "",
            )
            self._members = None  # formed again next time
            self.last = {"weights/transport": "failed"}
        self.last["weights/push_seconds"] = time.perf_counter() - start
        return handle

    def receive(self, handle: Any) -> Any:
        return self.store.receive(handle)

    def _form(self, source: Any, receivers: list[Any]) -> bool:
        """Form the group unless it stands with these members; returns whether it was formed now."""
        members = [source, *receivers]
        ids = [m._actor_id.hex() for m in members]
        if ids == self._members:
            if self.transport is None:  # the same members, still with no transport between them
                return False
            held = ray.get([m.weight_group_id.remote() for m in members], timeout=self.timeout_s)
            if all(h == self._group_id for h in held):
                return False
        places = ray.get([m.weights_place.remote() for m in members], timeout=self.timeout_s)
        self.transport = transport_for(places)
        self._members, self._group_id = ids, uuid.uuid4().hex
        if self.transport is None:
            log.warning(
                "no direct transport between the trainer and the samplers (%s): weights go through the object store",
                ", ".join(f"{p.node[:8]}:{p.gpu or 'cpu'}" for p in places),
            )
            return True
        host, port = ray.get(source.rendezvous.remote(), timeout=self.timeout_s)
        ray.get(
            [
                m.join_weights.remote(host, port, i, len(members), self.transport, self._group_id, self.timeout_s)
                for i, m in enumerate(members)
            ],
            timeout=self.timeout_s * 2,
        )
        log.info("weight group: the trainer and %d sampler(s) over %s", len(receivers), self.transport)
        return True

    def _push(self, source: Any, receivers: list[Any], version: int) -> None:
        manifest = ray.get(source.weight_manifest.remote(version), timeout=self.timeout_s)
        try:
            if self.transport == "ipc":
                handles = ray.get(source.send_weights.remote(version), timeout=self.timeout_s)
                calls = [r.receive_weights.remote(version, manifest, handles) for r in receivers]
            else:
                calls = [source.send_weights.remote(version)]
                calls += [r.receive_weights.remote(version, manifest, None) for r in receivers]
            ray.get(calls, timeout=self.timeout_s * 2)
        except ray.exceptions.RayError:
            source.release_weights.remote()  # not waited for: it runs once the sender's own call has timed out
            raise
        ray.get(source.release_weights.remote(), timeout=self.timeout_s)
