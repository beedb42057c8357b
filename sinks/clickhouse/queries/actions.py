"""Reads of runbook actions (``actions`` table, migration 0009): each action at its newest
state, and the full history an incident timeline shows."""

from __future__ import annotations

from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import Page, filters, ident, paged, select

# One row per state change; an action is its newest version.
_CURRENT = (
    "SELECT action_id, argMax(incident_id, version) AS incident_id, "
    "argMax(alert_key, version) AS alert_key, argMax(fingerprint, version) AS fingerprint, "
    "argMax(rule, version) AS rule, argMax(runbook, version) AS runbook, "
    "argMax(step, version) AS step, argMax(kind, version) AS kind, "
    "argMax(outcome, version) AS outcome, argMax(by, version) AS by, "
    "argMax(plan, version) AS plan, argMax(detail, version) AS detail, "
    "argMax(duration_ms, version) AS duration_ms, min(ts) AS created_at, "
    "max(ts) AS updated_at "
    "FROM {db}.actions FINAL GROUP BY action_id"
)


def actions(store: Store, db: str, page: Page, *, incident_id: str | None = None,
            fingerprint: str | None = None, outcome: str | None = None) -> dict[str, Any]:
    """Runbook actions at their current outcome, newest change first."""
    where, extra = filters({
        "incident_id": ("incident_id = {incident_id:String}", incident_id),
        "fingerprint": ("fingerprint = {fingerprint:String}", fingerprint),
        "outcome": ("outcome = {outcome:String}", outcome)})
    sql = (f"SELECT * FROM ({_CURRENT.format(db=ident(db))}) WHERE 1{where} "
           "ORDER BY updated_at DESC")
    return paged(store, sql, extra, page)


def action_history(store: Store, db: str, *, incident_id: str = "", alert_key: str = ""
                   ) -> list[dict[str, Any]]:
    """Every state change of the actions of one incident (or alert episode), oldest first:
    what a timeline shows (``ts``, ``kind``, ``step``, ``outcome``, ``by``, ``detail``)."""
    if not incident_id and not alert_key:
        raise ValueError("give an incident_id or an alert_key")
    col, val = ("incident_id", incident_id) if incident_id else ("alert_key", alert_key)
    sql = ("SELECT ts, action_id, incident_id, alert_key, rule, step, kind, outcome, by, plan, "
           f"detail, duration_ms, version FROM {ident(db)}.actions FINAL "
           f"WHERE {col} = {{key:String}} ORDER BY ts, version LIMIT 10000")
    return select(store, sql, {"key": val})
