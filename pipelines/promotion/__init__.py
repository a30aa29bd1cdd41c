"""The promotion flow: promotions as Git changes, with gates, approvals and rollbacks.

``Promotions(repo, registry).promote(...)`` / ``.approve(...)`` / ``.rollback(...)``
write audited commits to the GitOps repository; :func:`finalize_champion` moves the
registry's ``champion`` alias once a change has taken effect.
"""

from pipelines.promotion.champion import PROMOTION_ACTOR, finalize_champion
from pipelines.promotion.flow import ModelCatalog, Promotions, new_promotion_id
from pipelines.promotion.gate import (
    Gate,
    GateOutcome,
    GateRequest,
    evaluation_gate,
    run_gate,
    skip_gate,
)
from pipelines.promotion.policy import PromotionPolicy
from pipelines.promotion.records import Approval, Promotion, Rollback

__all__ = [
    "PROMOTION_ACTOR",
    "Approval",
    "Gate",
    "GateOutcome",
    "GateRequest",
    "ModelCatalog",
    "Promotion",
    "PromotionPolicy",
    "Promotions",
    "Rollback",
    "evaluation_gate",
    "finalize_champion",
    "new_promotion_id",
    "run_gate",
    "skip_gate",
]
