"""What an approval checks before it merges a promotion branch into main.

A promotion branch is an ordinary Git branch: anyone with push access could add to it
after the promotion was written and gated. An approval merges only what the
promotion itself wrote, and only onto the manifest it was computed from.
"""

from __future__ import annotations

from paved.errors import Conflict
from pipelines.gitops.layout import default_team, endpoint_path, team_path
from pipelines.gitops.repo import GitOpsRepo
from pipelines.promotion.records import Promotion


def check_mergeable(repo: GitOpsRepo, promo: Promotion, ref: str) -> None:
    """The branch changes only its manifest (and creates its team's policy, for a new
    team), and main has not changed that manifest since the branch was written."""
    git, main = repo.git, repo.main
    path = endpoint_path(promo.env, promo.endpoint)
    if git.is_ancestor(ref, main):
        raise Conflict(f"promotion {promo.id} is merged already", rule="promotion_approved")
    base = git.merge_base(main, ref)
    changed = set(git.changed_files(base, ref)) if base else set()
    on_branch = repo.read_endpoint(promo.env, promo.endpoint, at=ref)
    team = on_branch[1].metadata.team if on_branch else None
    if (
        base is None
        or path not in changed
        or (
            changed != {path}
            and (team is None or not _created_default_team(repo, team, path, base, ref))
        )
    ):
        raise Conflict(
            f"{promo.branch} changes more than {path}; it can not be approved as a promotion",
            rule="promotion_tampered",
        )
    if git.show_file(main, path) != git.show_file(base, path):
        raise Conflict(
            f"{promo.env}/{promo.endpoint} changed on main after promotion {promo.id} "
            "was written; promote again from the current state",
            rule="promotion_stale",
        )


def _created_default_team(repo: GitOpsRepo, team: str, path: str, base: str, ref: str) -> bool:
    """Whether the branch changes ``path`` and creates ``team``'s default policy,
    byte for byte as the promotion wrote it, and nothing else."""
    git, team_file = repo.git, team_path(team)
    return (
        set(git.changed_files(base, ref)) == {path, team_file}
        and git.show_file(base, team_file) is None
        and git.show_file(ref, team_file) == default_team(team)
    )
