"""Which replica serves a request: endpoint -> champion or challenger -> an address.

The split is a pure function of the route and the request so it is tested without a
cluster: a weighted random draw, or, when the route is sticky and the caller sends a
user id, a hash of that id, so one user stays on one side for the whole canary.

The user id comes from one place for both protocols: the ``x-paved-user`` header, or,
for an OpenAI request without it, the body's ``user`` field. The hash is salted with
the endpoint's name, so a user in one canary's challenger group is not thereby in
every other canary's challenger group too.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from typing import Literal

from paved.kinds import Protocol as Protocol  # what a model kind is served with
from paved.manifest import Endpoint

Cohort = Literal["champion", "challenger"]


@dataclass(frozen=True)
class Route:
    """An endpoint's current traffic plan."""

    endpoint: Endpoint
    champion: int
    challenger: int | None = None
    weight: int = 0  # percent of traffic to the challenger (canary)
    shadow: bool = False  # mirror every request to the challenger, answer from champion
    sticky: bool = False
    protocol: Protocol = "openai"

    @classmethod
    def from_manifest(cls, ep: Endpoint, protocol: Protocol) -> Route:
        ch = ep.spec.challenger
        return cls(
            endpoint=ep,
            protocol=protocol,
            champion=ep.spec.champion.version,
            challenger=ch.version if ch else None,
            weight=ch.weight if ch and ch.mode == "canary" else 0,
            shadow=bool(ch and ch.mode == "shadow"),
            sticky=bool(ch and ch.sticky),
        )

    @property
    def versions(self) -> tuple[int, ...]:
        return (self.champion,) if self.challenger is None else (self.champion, self.challenger)


def user_id(header: bytes | None, body_user: object = None) -> str | None:
    """The caller's user id for sticky assignment: the ``x-paved-user`` header
    (``serving.headers.USER``), else the OpenAI ``user`` field; ``None`` when neither is
    a non-empty string."""
    if header:
        return header.decode("latin-1")
    if isinstance(body_user, str) and body_user:
        return body_user
    return None


def bucket(user: str, salt: str = "") -> int:
    """A stable 0..99 bucket for a user id, independent across salts (endpoints)."""
    digest = hashlib.blake2b(user.encode(), digest_size=8, salt=_salt(salt)).digest()
    return int.from_bytes(digest, "big") % 100


@functools.lru_cache(maxsize=1024)
def _salt(salt: str) -> bytes:
    # blake2b takes a salt of at most 16 bytes: a digest of any endpoint name fits.
    return hashlib.blake2b(salt.encode(), digest_size=16).digest()


def choose(route: Route, user: str | None, rng: random.Random | None = None) -> tuple[int, Cohort]:
    """The version and cohort that answer this request."""
    if route.challenger is None or route.weight <= 0:
        return route.champion, "champion"
    if route.weight >= 100:
        return route.challenger, "challenger"
    if route.sticky and user:
        draw = bucket(user, route.endpoint.name)
    else:
        draw = (rng or random).randrange(100)
    if draw < route.weight:
        return route.challenger, "challenger"
    return route.champion, "champion"


@dataclass
class RouteTable:
    """All endpoints the gateway serves, swapped atomically on update."""

    routes: dict[str, Route] = field(default_factory=dict)

    @classmethod
    def from_endpoints(
        cls, endpoints: list[Endpoint], protocols: dict[str, Protocol]
    ) -> RouteTable:
        """``protocols`` maps endpoint name to the protocol its model speaks."""
        return cls({ep.name: Route.from_manifest(ep, protocols[ep.name]) for ep in endpoints})

    def get(self, name: str) -> Route | None:
        return self.routes.get(name)
