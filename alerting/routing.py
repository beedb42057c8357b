"""The routing tree, like Alertmanager's: match labels, ``continue``, inherited settings.

An alert walks the tree depth first; the deepest matching route wins unless a matching
route sets ``continue: true``, in which case later siblings are tried too. Each match says
which receiver gets the alert and how it is grouped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerting.runbooks import Runbook
from alerting.silences import Matcher, matches_all, parse_matchers
from alerting.yamlfile import Duration


class Route(BaseModel):
    """A node of the tree; unset timings and group_by inherit from the parent."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    receiver: str | None = None
    matchers: list[Matcher] = []
    group_by: list[str] | None = None  # ["..."] groups by every label
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = []
    runbook: Runbook | None = None  # for alerts this route takes, unless their rule has one

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, v: list[Any]) -> list[Matcher]:
        return parse_matchers(v)


class RouteMatch(BaseModel):
    """Where an alert goes: route id, receiver and the resolved grouping settings."""

    model_config = ConfigDict(frozen=True)

    route_id: str
    receiver: str
    group_by: list[str]
    group_wait: float
    group_interval: float
    repeat_interval: float

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The aggregation group this alert joins on this route."""
        keys = sorted(labels) if self.group_by == ["..."] else self.group_by
        return self.route_id + "{" + ",".join(f"{k}={labels.get(k, '')}" for k in keys) + "}"


_DEFAULTS = RouteMatch(route_id="", receiver="", group_by=["alertname"], group_wait=30.0,
                       group_interval=300.0, repeat_interval=4 * 3600.0)


def _inherit(route: Route, parent: RouteMatch, route_id: str) -> RouteMatch:
    return RouteMatch(
        route_id=route_id,
        receiver=route.receiver or parent.receiver,
        group_by=route.group_by if route.group_by is not None else parent.group_by,
        group_wait=route.group_wait if route.group_wait is not None else parent.group_wait,
        group_interval=route.group_interval if route.group_interval is not None
        else parent.group_interval,
        repeat_interval=route.repeat_interval if route.repeat_interval is not None
        else parent.repeat_interval)


def match_routes(root: Route, labels: Mapping[str, str]) -> list[RouteMatch]:
    """Every route that takes this alert (the root when no child matches)."""
    return _walk(root, labels, _inherit(root, _DEFAULTS, "0"), "0")


def _walk(route: Route, labels: Mapping[str, str], here: RouteMatch,
          route_id: str) -> list[RouteMatch]:
    out: list[RouteMatch] = []
    for i, child in enumerate(route.routes):
        if not matches_all(child.matchers, labels):
            continue
        cid = f"{route_id}.{i}"
        out.extend(_walk(child, labels, _inherit(child, here, cid), cid))
        if not child.continue_:
            break
    return out or [here]


def receivers_used(root: Route) -> set[str]:
    """All receiver names the tree refers to (for config validation)."""
    names = {root.receiver} if root.receiver else set()
    for child in root.routes:
        names |= receivers_used(child)
    return names


def route_runbook(root: Route, route_id: str) -> tuple[str, Runbook] | None:
    """The runbook of the route ``route_id`` ("0.1.2") or of its nearest ancestor that has
    one, with the id of the route it came from."""
    node, found = root, (("0", root.runbook) if root.runbook else None)
    parts = route_id.split(".")[1:]
    here = "0"
    for p in parts:
        node = node.routes[int(p)]
        here = f"{here}.{p}"
        if node.runbook is not None:
            found = (here, node.runbook)
    return found


def all_runbooks(root: Route) -> list[Runbook]:
    """Every runbook the tree carries (for config validation)."""
    out = [root.runbook] if root.runbook else []
    for child in root.routes:
        out += all_runbooks(child)
    return out
