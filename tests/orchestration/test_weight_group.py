"""The weight group's transport without Ray: which transport fits which members, how a policy is cut into
buckets and put back, and a real gloo broadcast between three members (threads of this process), the same
code NCCL runs on GPUs. The CUDA IPC handles are opened in another process where a GPU is (the last test)."""

from __future__ import annotations

import socket
import threading

import pytest
import torch

from orchestration.weight_group import CollectiveGroup, Manifest, Place, export_ipc, import_ipc, transport_for
from orchestration.weights import StaleWeights


def test_the_transport_follows_where_the_members_hold_their_weights():
    cpu = [Place("n1", None), Place("n2", None), Place("n1", None)]
    assert transport_for(cpu) == "gloo"
    assert transport_for([Place("n1", "g0"), Place("n1", "g1"), Place("n2", "g2")]) == "nccl"
    assert transport_for([Place("n1", "g0"), Place("n1", "g0")]) == "ipc"  # NCCL refuses two ranks on a GPU
    assert transport_for([Place("n1", "g0"), Place("n2", None)]) is None  # GPU and CPU: the object store
    assert transport_for([Place("n1", "g0"), Place("n1", "g0"), Place("n1", "g1")]) is None  # half shared


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "wte": torch.randn(10, 4, generator=g),  # 160 bytes
        "ln.bias": torch.randn(4, generator=g).to(torch.bfloat16),  # 8 bytes
        "h.0": torch.randn(3, 5, generator=g),  # 60 bytes
        "h.1": torch.randn(2, generator=g),  # 8 bytes
        "steps": torch.tensor([7]),  # int64, 8 bytes
    }


def test_buckets_hold_one_dtype_each_within_the_limit_and_give_back_the_same_state():
    state = _state()
    m = Manifest.of(3, {"hidden_size": 4}, state)
    assert m.dtypes == ("float32", "bfloat16", "float32", "float32", "int64")
    # by hand at 200 bytes: wte (160) opens float32's bucket, h.0 (60) would make 220 so opens another, h.1
    # (8) joins it; bf16 and int64 have one each
    assert m.buckets(200) == [[0], [2, 3], [1], [4]]
    assert m.buckets(10**6) == [[0, 2, 3], [1], [4]]
    assert m.buckets(100) == [[0], [2, 3], [1], [4]]  # a tensor over the limit goes alone
    for limit in (100, 200, 10**6):
        flats = m.pack(state, limit)
        assert [f.dtype for f in flats] == [torch.float32] * (len(flats) - 2) + [torch.bfloat16, torch.int64]
        back = m.unpack(flats, limit)
        assert list(back) == list(state) and all(torch.equal(back[k], v) for k, v in state.items())


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group(manifests: dict[int, Manifest], state: dict[str, torch.Tensor], sends: int = 1) -> dict[int, list]:
    """Rank 0 sends ``state`` ``sends`` times as manifest 0; ranks 1.. receive with their own manifests."""
    port, got = _port(), {}

    def member(rank: int) -> None:
        group = CollectiveGroup("gloo", "127.0.0.1", port, rank, len(manifests), "cpu", timeout_s=30)
        got[rank] = []
        for _ in range(sends):
            try:
                if rank == 0:
                    group.send(manifests[0], state)
                else:
                    got[rank].append(group.receive(manifests[rank]))
            except StaleWeights as err:
                got[rank].append(err)
        group.close()

    threads = [threading.Thread(target=member, args=(r,)) for r in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a member of the group hung"
    return got


def test_a_gloo_broadcast_gives_every_receiver_the_senders_weights():
    state = _state()
    m = Manifest.of(5, {}, state)
    got = _group({0: m, 1: m, 2: m}, state)
    for rank in (1, 2):
        [received] = got[rank]
        assert all(torch.equal(received[k], v) and received[k].dtype == v.dtype for k, v in state.items())


def test_a_receiver_expecting_another_version_refuses_it_and_the_group_goes_on():
    state = _state()
    sent = Manifest.of(5, {}, state)
    expected = Manifest.of(4, {}, state)  # the driver told rank 2 it would get version 4
    got = _group({0: sent, 1: sent, 2: expected}, state, sends=2)
    assert all(isinstance(x, dict) for x in got[1])
    assert [type(x) for x in got[2]] == [StaleWeights, StaleWeights]  # drained, refused, and in step again
    assert "version 5, but the work is for version 4" in str(got[2][0])


def _open_ipc(handles: list, manifest: Manifest, out) -> None:
    back = manifest.unpack(import_ipc(handles, "cuda"))
    out.put({k: v.cpu() for k, v in back.items()})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA IPC needs a GPU")
def test_cuda_ipc_handles_open_in_another_process_to_the_same_weights():
    import torch.multiprocessing as mp

    state = {k: v.cuda() for k, v in _state().items()}
    m = Manifest.of(1, {}, state)
    flats = m.pack(state)  # kept alive here until the other process has copied them
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_open_ipc, args=(export_ipc(flats), m, out))
    child.start()
    back = out.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert all(torch.equal(back[k], v.cpu()) for k, v in state.items())
