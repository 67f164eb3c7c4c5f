"""A local campaign's Ray listens on the loopback address only: checked on the sockets of the driver's process
and of every process it started (GCS server, raylet, agents, workers, actors)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import psutil
import pytest
import ray

from orchestration.ray_runtime import ensure_ray

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out


def _listening(root: psutil.Process) -> list[tuple[str, str, int]]:
    out = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.name(), conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_a_local_ray_binds_no_socket_beyond_loopback():
    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(None, num_cpus=1)
    try:

        @ray.remote
        class Echo:
            def pid(self) -> int:
                return os.getpid()

        actor = Echo.remote()  # type: ignore[attr-defined]
        assert ray.get(actor.pid.remote()) != os.getpid()
        sockets = _listening(psutil.Process())
        names = {name for name, _, _ in sockets}
        assert "gcs_server" in names and "raylet" in names, sockets  # the check looks where Ray listens
        assert [s for s in sockets if not _loopback(s[1])] == []
    finally:
        ray.shutdown()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # a later cluster join is not affected
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file():  # whoever reads the token can run code on the cluster
        assert token.stat().st_mode & 0o077 == 0
