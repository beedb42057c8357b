"""``logwarden.changes.v1`` and ``logwarden.feedback.v1``: changes to the fleet and people's
judgements of what logwarden said."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from schemas.base import ContractModel
from schemas.common import ServiceName, ShortStr, Timestamp


class Change(ContractModel):
    """A deploy, config change, scale event, feature flag or experiment."""

    ts: Timestamp
    service: ServiceName
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    description: Annotated[str, Field(max_length=4096)]
    event_id: ShortStr | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)


# What a verdict is about; an incident's verdict is ``missed`` when nothing caught it.
FeedbackTarget = Literal["alert", "anomaly", "category", "incident"]
FEEDBACK_TARGETS: tuple[str, ...] = get_args(FeedbackTarget)


class Feedback(ContractModel):
    """A person's verdict on an alert, an anomaly, a log category or an incident."""

    ts: Timestamp
    target_kind: FeedbackTarget
    target_id: ShortStr
    verdict: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]  # true/false/unsure/...
    user: ShortStr = "anonymous"
    comment: Annotated[str, Field(max_length=4096)] = ""
    # For categories: the corrected category / priority.
    category: ShortStr | None = None
    priority: ShortStr | None = None
    event_id: ShortStr | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
