"""Each new policy straight from the trainer's rank 0 into the samplers' models, over a group of their own.

The object store (``orchestration.weights``) moves weights through host memory: the trainer copies them out
of its device, the samplers read them and copy them onto theirs. Where the members hold GPUs that round-trip
is skipped; the transport depends on where the members' weights live (``transport_for``):

- ``nccl``: every member has a GPU of its own: a NCCL broadcast, device to device (NVLink / InfiniBand);
- ``ipc``: the members share one GPU (Ray's fractional GPUs on one node; NCCL refuses two ranks on one
  device): rank 0 exports CUDA IPC handles of its buffers and the samplers copy from them on the device;
- ``gloo``: every member is on CPU: a gloo broadcast over TCP. It runs exactly the code NCCL runs, which is
  how CI (no GPU) tests the collective path.

Members mixing CPU and GPU, or some sharing a GPU while others do not, get no transport here (``None``):
the campaign keeps the object store for them.

The weights go in buckets: the tensors of one dtype flattened into buffers of at most ``BUCKET_BYTES``, so a
large policy goes in a few big messages, and a broadcast's sender never holds a second full copy of it (CUDA
IPC shares every bucket at once, so its sender does, until the receivers have copied them). A header carrying
the version goes first; a receiver whose manifest names another version refuses the weights
(``StaleWeights``) after draining them, so the group stays usable.

No Ray here: the members are Ray actors, but joining and moving weights is torch.distributed alone.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from orchestration.weights import expect_version

BUCKET_BYTES = 256 * 2**20  # per message; bounds the extra memory of the flat copies on both sides


@dataclass(frozen=True)
class Place:
    """Where a member's weights live: its Ray node and its GPU's UUID (None: on CPU)."""

    node: str
    gpu: str | None


def place_of(device: torch.device | str, node: str) -> Place:
    """This process's ``Place`` for weights held on ``device``."""
    device = torch.device(device)
    if device.type != "cuda":
        return Place(node, None)
    return Place(node, str(torch.cuda.get_device_properties(device).uuid))


def transport_for(places: Sequence[Place]) -> str | None:
    """The transport between members at ``places`` (rank 0 first), or None when there is none.

    >>> transport_for([Place("a", None), Place("b", None)])
    'gloo'
    >>> transport_for([Place("a", "gpu-0"), Place("b", "gpu-1")])
    'nccl'
    >>> transport_for([Place("a", "gpu-0"), Place("a", "gpu-0")])
    'ipc'
    """
    gpus = [p.gpu for p in places]
    if all(g is None for g in gpus):
        return "gloo"
    if any(g is None for g in gpus):
        return None  # CPU and GPU members: the object store bridges them
    if len(set(gpus)) == len(gpus):
        return "nccl"
    if len(set(gpus)) == 1 and len({p.node for p in places}) == 1:
        return "ipc"
    return None  # some share a GPU, some do not


@dataclass(frozen=True)
class Manifest:
    """What a published policy is made of, sent ahead of the weights so that receivers can allocate them."""

    version: int
    config: dict[str, Any]
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]  # torch dtype names, e.g. 'float32'

    @classmethod
    def of(cls, version: int, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Manifest:
        names = tuple(state)
        return cls(
            version,
            config,
            names,
            tuple(tuple(state[n].shape) for n in names),
            tuple(str(state[n].dtype).removeprefix("torch.") for n in names),
        )

    def buckets(self, max_bytes: int = BUCKET_BYTES) -> list[list[int]]:
        """The tensors' indexes grouped into messages: one dtype each, at most ``max_bytes`` (a larger tensor
        goes alone), in the manifest's order within a dtype."""
        out: list[list[int]] = []
        open_: dict[str, tuple[list[int], int]] = {}
        for i, (shape, dtype) in enumerate(zip(self.shapes, self.dtypes)):
            size = _numel(shape) * _dtype(dtype).itemsize
            current, used = open_.get(dtype, ([], 0))
            if current and used + size > max_bytes:
                out.append(current)
                current, used = [], 0
            open_[dtype] = (current + [i], used + size)
        out.extend(b for b, _ in open_.values() if b)
        return out

    def packed(self, state: dict[str, torch.Tensor], max_bytes: int = BUCKET_BYTES) -> Iterator[torch.Tensor]:
        """The flat buffers of ``state``, made one bucket at a time (on the tensors' own device): a sender that
        sends each before making the next holds a bucket or two beyond its weights, not a second copy."""
        for b in self.buckets(max_bytes):
            yield torch.cat([state[self.names[i]].detach().reshape(-1) for i in b])

    def pack(self, state: dict[str, torch.Tensor], max_bytes: int = BUCKET_BYTES) -> list[torch.Tensor]:
        """All of ``packed`` at once (CUDA IPC shares every buffer together)."""
        return list(self.packed(state, max_bytes))

    def empty(self, device: torch.device | str, max_bytes: int = BUCKET_BYTES) -> list[torch.Tensor]:
        """Receiving buffers for ``pack``'s output."""
        return [
            torch.empty(sum(_numel(self.shapes[i]) for i in b), dtype=_dtype(self.dtypes[b[0]]), device=device)
            for b in self.buckets(max_bytes)
        ]

    def unpack(self, flats: list[torch.Tensor], max_bytes: int = BUCKET_BYTES) -> dict[str, torch.Tensor]:
        """The state dict in ``flats`` (views into them, no copy)."""
        state: dict[str, torch.Tensor] = {}
        for bucket, flat in zip(self.buckets(max_bytes), flats, strict=True):
            offset = 0
            for i in bucket:
                n = _numel(self.shapes[i])
                state[self.names[i]] = flat[offset : offset + n].view(self.shapes[i])
                offset += n
        return {n: state[n] for n in self.names}


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"manifest: unknown dtype {name!r}")
    return dtype


class CollectiveGroup:
    """One member's end of a broadcast group (``nccl`` or ``gloo``): rank 0 sends, every other rank receives.

    Built from a TCP store of its own rather than torch's default group: rank 0 is also a rank of the
    trainer's own process group, and the samplers are in no other group.
    """

    def __init__(
        self,
        backend: str,
        host: str,
        port: int,
        rank: int,
        world: int,
        device: torch.device | str,
        timeout_s: float,
        bind: str = "127.0.0.1",
    ):
        import torch.distributed as dist

        if backend not in ("nccl", "gloo"):
            raise ValueError(f"a collective group runs over nccl or gloo, not {backend!r}")
        timeout = datetime.timedelta(seconds=timeout_s)
        self.rank, self.device = rank, torch.device(device)
        self.store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout, wait_for_workers=False)
        if backend == "nccl":
            # as torch's own group helper builds one: options carrying the timeout
            nccl = dist.ProcessGroupNCCL
            opts = nccl.Options()
            opts.is_high_priority_stream = False
            opts._timeout = timeout
            self.pg: Any = nccl(self.store, rank, world, opts)
        else:
            # every member binds its own node's address (``bind``): with several interfaces, gloo's guess can be
            # unroutable
            opts = dist.ProcessGroupGloo._Options()
            opts._timeout = timeout
            opts._devices = [dist.ProcessGroupGloo.create_device(hostname=bind)]
            self.pg = dist.ProcessGroupGloo(self.store, rank, world, opts)

    def _broadcast(self, tensor: torch.Tensor) -> None:
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self.pg.broadcast([tensor], opts).wait()

    def send(self, manifest: Manifest, state: dict[str, torch.Tensor]) -> None:
        """Rank 0: the header, then every bucket of ``state``."""
        self._broadcast(torch.tensor([manifest.version, len(manifest.names)], dtype=torch.int64, device=self.device))
        for flat in manifest.packed(state):
            self._broadcast(flat.to(self.device))

    def receive(self, manifest: Manifest) -> dict[str, torch.Tensor]:
        """Any other rank: the weights ``manifest`` describes, on this member's device."""
        header = torch.empty(2, dtype=torch.int64, device=self.device)
        self._broadcast(header)
        flats = manifest.empty(self.device)
        for flat in flats:  # drained even when the header is wrong: the group stays in step for the next time
            self._broadcast(flat)
        version, count = (int(x) for x in header.tolist())
        expect_version(version, manifest.version, "the weight broadcast")
        if count != len(manifest.names):
            raise ValueError(f"the weight broadcast sent {count} tensors, the manifest names {len(manifest.names)}")
        return manifest.unpack(flats)

    def close(self) -> None:
        shutdown = getattr(self.pg, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except RuntimeError:  # already broken (a member died): nothing left to release
                pass


def export_ipc(flats: list[torch.Tensor]) -> list[Any]:
    """Rank 0 of an ``ipc`` group: picklable CUDA IPC handles on ``flats`` (which the caller keeps alive
    until every receiver has copied them), each with its GPU's UUID."""
    from torch.multiprocessing.reductions import reduce_tensor

    return [(str(torch.cuda.get_device_properties(f.device).uuid), reduce_tensor(f)) for f in flats]


def import_ipc(handles: list[Any], device: torch.device | str) -> list[torch.Tensor]:
    """Copies, on ``device``, of the buffers ``export_ipc`` shared. The device number inside a handle is the
    sender's; under Ray each actor numbers its visible GPUs from 0, so the GPU is found by its UUID."""
    device = torch.device(device)
    out = []
    for uuid, (rebuild, args) in handles:
        index = _device_index(uuid)
        args = list(args)
        args[6] = index  # rebuild_cuda_tensor's storage_device
        shared = rebuild(*args)
        out.append(shared.to(device, copy=True))
        del shared
    torch.cuda.synchronize(device)
    return out


def _device_index(uuid: str) -> int:
    for i in range(torch.cuda.device_count()):
        if str(torch.cuda.get_device_properties(i).uuid) == uuid:
            return i
    raise RuntimeError(f"the weights' GPU {uuid} is not visible to this process")
