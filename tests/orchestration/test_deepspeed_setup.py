"""DeepSpeed's start on CPU compiles nothing."""

from __future__ import annotations

from orchestration.deepspeed_setup import SHM_KERNEL, skip_cpu_inference_kernel


def test_deepspeed_comm_backend_builds_no_shared_memory_kernel():
    # DeepSpeed's comm backend calls build_shm_op when it starts; were the op still marked available on CPU it would
    # JIT-compile it here (C++, a minute) and return the module. On a GPU the op has no builder at all.
    import deepspeed.ops
    from deepspeed.comm.torch import build_shm_op

    skip_cpu_inference_kernel()
    assert build_shm_op() is None
    assert SHM_KERNEL in deepspeed.ops.__compatible_ops__  # the table still names the op under this name
