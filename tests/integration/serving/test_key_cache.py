"""Unknown keys cannot stampede the key store: a flood of random or malformed keys reads
the key table O(1) times, not once per request. The real key store (SQLite and
PostgreSQL), its reads counted; the gateway's own key cache, on an injected clock so
the counts do not depend on how fast the machine is."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paved.errors import Unauthenticated
from paved.manifest import Endpoint
from paved.schemas import Role
from serving.gateway.app import Gateway
from serving.gateway.auth import KeyCache, Snapshot
from serving.gateway.directory import StaticDirectory
from serving.gateway.routing import RouteTable
from serving.keys import KeyStore
from tests.conftest import PG_ADMIN_DSN, _pg_admin
from tests.utils.servers import UvicornThread, trivial_replica

pytestmark = pytest.mark.integration

FLOOD = 10_000
HTTP_FLOOD = 2_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountedStore:
    """The key store, counting the reads of its key table."""

    def __init__(self, uri: str) -> None:
        self.store = KeyStore(uri)
        self.reads = 0

    def snapshot(self) -> Snapshot:
        self.reads += 1
        return self.store.snapshot()

    def new_key(self, team: str = "search") -> str:
        return self.store.create(team=team, roles=frozenset({Role.APP}), created_by="t")[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CountedStore]:
    if request.param == "sqlite":
        counted = CountedStore(f"sqlite:///{tmp_path / 'keys.db'}")
        yield counted
        counted.store.dispose()
        return
    name = f"paved_keycache_{uuid.uuid4().hex[:10]}"
    conn = _pg_admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    counted = CountedStore(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield counted
    finally:
        counted.store.dispose()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


def random_key() -> str:
    """Well formed, so it passes the format check and reaches the id lookup."""
    return f"pp-{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"


def bearer(key: str) -> bytes:
    return f"Bearer {key}".encode()


async def refused(cache: KeyCache, keys: list[str]) -> int:
    """How many of ``keys``, sent all at once, were refused with a 401."""
    results = await asyncio.gather(
        *(cache.authenticate(bearer(k)) for k in keys), return_exceptions=True
    )
    assert all(isinstance(r, Unauthenticated) for r in results), {type(r) for r in results}
    return len(results)


def test_a_flood_of_unknown_keys_reads_the_table_a_constant_number_of_times(
    store: CountedStore,
) -> None:
    store.new_key()
    clock = Clock()
    cache = KeyCache(store.snapshot, miss_refresh_min_s=1.0, clock=clock)
    assert store.reads == 1  # the start-up load

    async def flood() -> None:
        # All at once: the first miss refreshes, the others share that one read.
        assert await refused(cache, [random_key() for _ in range(FLOOD)]) == FLOOD
        assert store.reads == 2
        # One after another: within the interval, no miss refreshes again.
        for _ in range(FLOOD):
            with pytest.raises(Unauthenticated):
                await cache.authenticate(bearer(random_key()))
        malformed = ["pp-xyz", "x" * 40, "pp-" + "0" * 16 + ".short", "", "pp-\u00b2." + "a" * 43]
        await refused(cache, malformed * 100)
        assert store.reads == 2
        # Later, another flood: one more read for all of it.
        clock.now += 1.0
        await refused(cache, [random_key() for _ in range(FLOOD)])
        assert store.reads == 3

    asyncio.run(flood())


def test_an_unknown_id_is_remembered_bounded_and_for_a_while(store: CountedStore) -> None:
    clock = Clock()
    cache = KeyCache(
        store.snapshot, miss_refresh_min_s=1.0, negative_ttl_s=30.0, negative_max=2, clock=clock
    )
    a, b, c = random_key(), random_key(), random_key()

    async def probe(key: str) -> int:
        before = store.reads
        clock.now += 1.0  # past the refresh interval: only the negative cache can spare a read
        with pytest.raises(Unauthenticated):
            await cache.authenticate(bearer(key))
        return store.reads - before

    async def run() -> None:
        assert [await probe(k) for k in (a, b)] == [1, 1]
        assert [await probe(k) for k in (a, b, a, b)] == [0, 0, 0, 0]  # remembered
        assert await probe(c) == 1  # a third id evicts the oldest one (a)
        assert [await probe(k) for k in (b, c, a)] == [0, 0, 1]
        clock.now += 30.0
        assert await probe(b) == 1  # its time is up: looked up again

    asyncio.run(run())


def test_a_new_key_works_on_its_first_request(store: CountedStore) -> None:
    clock = Clock()
    cache = KeyCache(store.snapshot, miss_refresh_min_s=1.0, clock=clock)

    async def run() -> None:
        key = store.new_key()
        record = await cache.authenticate(bearer(key))
        assert record.team == "search"
        # The store's answer is remembered; known keys cost no read at all.
        reads = store.reads
        for _ in range(1000):
            await cache.authenticate(bearer(key))
        assert store.reads == reads
        # A known id with a wrong secret is refused without a read.
        with pytest.raises(Unauthenticated):
            await cache.authenticate(bearer(key[:-4] + "AAAA"))
        assert store.reads == reads

    asyncio.run(run())


def test_through_the_gateway_random_keys_cost_no_reads_per_request(tmp_path: Path) -> None:
    """Over HTTP, the path every request takes (fewer of them: HTTP is the slow part)."""
    store = CountedStore(f"sqlite:///{tmp_path / 'keys.db'}")
    key = store.new_key()
    clock = Clock()
    cache = KeyCache(store.snapshot, refresh_s=3600, miss_refresh_min_s=1.0, clock=clock)
    endpoint = Endpoint.model_validate(
        {"metadata": {"name": "chat", "team": "search"},
         "spec": {"model": "m", "champion": {"version": 1}}}
    )  # fmt: skip
    with UvicornThread(trivial_replica) as replica:
        gw = Gateway(
            routes=RouteTable.from_endpoints([endpoint], {"chat": "openai"}),
            directory=StaticDirectory({("chat", 1): [replica.address]}),
            keys=cache,
        )
        with UvicornThread(gw) as server:

            async def flood() -> list[int]:
                limits = httpx.Limits(max_connections=32)
                async with httpx.AsyncClient(base_url=server.url, limits=limits) as c:
                    sem = asyncio.Semaphore(32)

                    async def one(k: str) -> int:
                        async with sem:
                            r = await c.post(
                                "/v1/completions",
                                headers={"authorization": f"Bearer {k}"},
                                json={"model": "chat", "prompt": "x"},
                            )
                            return r.status_code

                    return await asyncio.gather(*(one(random_key()) for _ in range(HTTP_FLOOD)))

            codes = asyncio.run(flood())
            assert codes == [401] * HTTP_FLOOD
            assert store.reads <= 2  # start-up, then one refresh for the whole flood
            ok = httpx.post(
                server.url + "/v1/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "chat", "prompt": "x"},
            )
            assert ok.status_code == 200
