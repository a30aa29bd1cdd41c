"""What Git said an endpoint should serve, change by change and at any moment.

Only the first-parent history of the main branch counts: a production promotion
takes effect when its approval merge lands on main, not when its branch commit was
written, so walking first parents gives the moments the desired state changed.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from paved.manifest import Endpoint
from pipelines.gitops import trailers as t
from pipelines.gitops.git import Git
from pipelines.gitops.layout import endpoint_from_blob, endpoint_path, load_blob


class Change(BaseModel):
    """One commit on main that changed an endpoint's manifest, and the manifest after it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commit: str
    committed_at: datetime
    author: str
    subject: str
    trailers: dict[str, str] = Field(description="The commit's Paved-* (and other) trailers.")
    manifest: Endpoint | None = Field(
        description="The manifest from this commit on; None when removed or invalid."
    )
    error: str | None = Field(default=None, description="Why the manifest here is invalid.")

    @property
    def action(self) -> str | None:
        return self.trailers.get(t.ACTION)

    @property
    def promotion_id(self) -> str | None:
        return self.trailers.get(t.PROMOTION_ID)


def changes(
    git: Git, main: str, endpoint: str, env: str, *, limit: int | None = None
) -> list[Change]:
    """The changes to one endpoint's manifest on main, newest first."""
    path = endpoint_path(env, endpoint)
    if git.rev_parse(f"refs/heads/{main}") is None:
        return []
    commits = git.log(main, paths=[path], first_parent=True, max_count=limit)
    texts = git.read_objects([f"{c.sha}:{path}" for c in commits])
    out = []
    for c in commits:
        text = texts.get(f"{c.sha}:{path}")
        loaded = load_blob(path, text, endpoint_from_blob) if text is not None else None
        out.append(
            Change(
                commit=c.sha,
                committed_at=c.committed_at,
                author=c.author,
                subject=c.subject,
                trailers=dict(c.trailers),
                manifest=loaded.value if loaded else None,
                error=loaded.error.message if loaded and loaded.error else None,
            )
        )
    return out


def what_was_serving(git: Git, main: str, endpoint: str, env: str, at: datetime) -> Change | None:
    """The change in effect at ``at``: the newest one committed at or before it.

    None means Git declared nothing for the endpoint then. ``at`` must carry a time zone.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    for change in changes(git, main, endpoint, env):
        if change.committed_at <= at:
            return change
    return None
