"""The embedded Ray that `paved serve` starts listens on loopback only: every port of
every Ray process (GCS, raylet, agents, metrics exporters, workers, the driver, the
gateway replica). The gateway replica also serves its metrics in multiprocess mode."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import psutil
import pytest
from ray import serve

from paved.schemas import Role
from paved.settings import Settings
from serving.deploy import Plan, RayServeTarget
from serving.internal_auth import new_token
from serving.keys import KeyStore
from tests.utils.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Echo:
    def __call__(self) -> str:
        return "echo"


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
    settings = Settings(home=tmp_path / "home", ray_address=None)
    settings.ensure_home()
    viewer = KeyStore(settings.tracking_uri).create(
        team="ops", roles=frozenset({Role.VIEWER}), created_by="t"
    )[0]
    port = free_port()
    token = new_token()
    target = RayServeTarget(settings, host="127.0.0.1", port=port, internal_token=token)
    target.start()
    try:
        ray.get(ray.remote(lambda: 1).remote())  # a worker up, with its own ports
        target.apply_routes(Plan([], {}, [], token))  # the gateway replica, no routes yet
        serve.run(Echo.bind(), name="echo", route_prefix=None)  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url).status_code == 401
        r = httpx.get(url, headers={"authorization": f"Bearer {viewer}"})
        assert r.status_code == 200, r.text
        assert 'paved_responses_total{code="401",route="/metrics"} 1.0' in r.text
        listening = _listening()
        assert len({name for _, _, name in listening}) >= 4, listening  # gcs, raylet, agents
        exposed = [entry for entry in listening if not _loopback(entry[0])]
        assert exposed == [], exposed
    finally:
        target.shutdown()
