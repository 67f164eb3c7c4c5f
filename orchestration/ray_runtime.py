"""Ray itself: a local Ray started here or an existing cluster joined, GPUs found, worker resources."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration.config import ClusterConfig

# On Linux Ray turns a node address of 127.0.0.1 into the machine's network address and its gRPC servers
# (GCS, raylet, workers) listen on every interface; with "clusters" off (its laptop mode for macOS and
# Windows) they bind to the loopback address only.
_RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray starts: its processes (which inherit the environment) bind to 127.0.0.1."""
    from ray._private import ray_constants

    before_env, before_flag = os.environ.get(_RAY_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray._private.services
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(_RAY_CLUSTER_SWITCH, None)
        else:
            os.environ[_RAY_CLUSTER_SWITCH] = before_env


def _private_token() -> None:
    """Ray writes its cluster token (~/.ray/auth_token) readable by every user; whoever reads it can run code
    on the cluster, so only its owner may."""
    token = Path.home() / ".ray" / "auth_token"
    try:
        if token.is_file() and token.stat().st_mode & 0o077:
            token.chmod(0o600)
    except OSError:  # not ours to change (a shared home): Ray's own permissions stay
        pass


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (an existing cluster) or start a local Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": a new Ray in this process, even where `ray start` left a cluster address behind
        # (plain ray.init() would join that cluster, or wait for it when it is gone); on 127.0.0.1, so a
        # laptop's campaign listens on no network interface
        with _loopback_only():
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=True,
                _node_ip_address="127.0.0.1",
            )
    _private_token()


def torch_trainer(worker: Any, loop_config: dict[str, Any], cluster: ClusterConfig, name: str, storage: str) -> Any:
    """A Ray Train ``TorchTrainer`` for ``worker`` on ``cluster``'s workers.

    On a Ray without a dashboard (a local Ray started here has none) there is no state API, so Ray Train's
    placement-group cleaner can never confirm that the controller is alive, and stopping it waits out a 12 s
    timeout at the end of every run (measured: a trivial run 22.8 s with it, 9.3 s without). There it
    cannot do its job (freeing the placement groups of a controller that died) anyway, so it is left out.
    """
    from ray._private.worker import get_dashboard_url
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    cls = TorchTrainer
    if not get_dashboard_url():
        try:
            from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
        except ImportError:  # another Ray Train version: keep its defaults
            PlacementGroupCleanerCallback = None  # noqa: N806

        if PlacementGroupCleanerCallback is not None:

            class TrainerWithoutCleaner(TorchTrainer):
                def _create_default_callbacks(self) -> list:
                    return [
                        c
                        for c in super()._create_default_callbacks()
                        if not isinstance(c, PlacementGroupCleanerCallback)
                    ]

            cls = TrainerWithoutCleaner
    return cls(
        worker,
        train_loop_config=loop_config,
        scaling_config=scaling(cluster),
        run_config=RunConfig(name=name, storage_path=storage),
    )


def resolve_gpu(setting: str) -> bool:
    """Whether training workers take a GPU: ``cluster.use_gpu`` against what the cluster has."""
    import ray

    if setting == "no":
        return False
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if setting == "yes" and not has_gpu:
        raise RuntimeError("cluster.use_gpu is 'yes' but the Ray cluster has no GPUs")
    return has_gpu


def scaling(cluster: ClusterConfig) -> Any:
    """Ray Train's ScalingConfig for ``cluster``: its workers, CPUs each, one GPU each when used."""
    from ray.train import ScalingConfig

    use_gpu = resolve_gpu(cluster.use_gpu)
    return ScalingConfig(
        num_workers=cluster.num_workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": cluster.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
    )
