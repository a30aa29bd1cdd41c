"""Who may do what at the gateway, and which version a pinned request reaches: pure
functions over a key and a route, kept apart from the dispatch in ``app.py``."""

from __future__ import annotations

from dataclasses import replace

from paved.errors import NotFound, PermissionDenied
from paved.schemas import Role
from serving.gateway.routing import Route
from serving.keys import ApiKey
from serving.protocol.openai import quote

INFER_ROLES = frozenset({Role.APP, Role.ML_ENGINEER, Role.ADMIN})
READ_ROLES = frozenset({Role.VIEWER, Role.ML_ENGINEER, Role.APPROVER, Role.ADMIN})


def pinned(route: Route, version: str) -> tuple[Route, int]:
    """The route of a request pinned to ``version`` (``/v2/models/<ep>/versions/<v>/...``).

    Only a version the endpoint serves now (champion or challenger) is answered, by
    that version alone: the split and shadowing do not apply. Any other is a 404.
    """
    served = {str(v): v for v in route.versions}
    if version not in served:
        raise NotFound(
            f"endpoint {route.endpoint.name!r} does not serve version {quote(version)}; "
            f"it serves {', '.join(sorted(served))}",
            rule="model_version",
        )
    pinned = served[version]
    if pinned == route.champion:
        return replace(route, challenger=None, weight=0, shadow=False, sticky=False), pinned
    # The challenger, chosen for every request: choose() sends weight 100 to it.
    return replace(route, weight=100, shadow=False, sticky=False), pinned


def require(key: ApiKey, roles: frozenset[Role], action: str) -> None:
    if not key.roles & roles:
        needed = ", ".join(sorted(r.value for r in roles))
        raise PermissionDenied(
            f"key {key.key_id} (roles: {', '.join(sorted(r.value for r in key.roles))}) may not "
            f"{action}; one of these roles is needed: {needed}",
            rule="role",
        )
