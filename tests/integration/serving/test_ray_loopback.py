"""The embedded Ray that `paved serve` starts listens on loopback only: every port of
every Ray process (GCS, raylet, agents, metrics exporters, workers, the driver)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import psutil
import pytest

from paved.settings import Settings
from serving.deploy import RayServeTarget
from serving.internal_auth import new_token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _listening() -> list[tuple[str, int, str]]:
    me = psutil.Process()
    out = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(c.laddr.ip, c.laddr.port, name) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_every_ray_port_listens_on_loopback(tmp_path: Path) -> None:
    import ray

    assert not ray.is_initialized(), "another test left Ray running"
    target = RayServeTarget(
        Settings(home=tmp_path / "home", ray_address=None),
        host="127.0.0.1",
        port=0,
        internal_token=new_token(),
    )
    target.start()
    try:
        ray.get(ray.remote(lambda: 1).remote())  # a worker up, with its own ports
        listening = _listening()
        assert len({name for _, _, name in listening}) >= 4, listening  # gcs, raylet, agents
        exposed = [entry for entry in listening if not _loopback(entry[0])]
        assert exposed == [], exposed
    finally:
        target.shutdown()
