"""Accuracy bookkeeping of triage, from feedback verdicts, as ClickHouse rows."""

from __future__ import annotations

from datetime import UTC, datetime

from categorisation.accuracy import AccuracyTracker


def test_verdicts_per_service() -> None:
    acc = AccuracyTracker(period_start=1_000.0)
    for _ in range(3):
        acc.record_feedback("web", confirmed=True)
    acc.record_feedback("web", confirmed=False, category="timeout", predicted_category="timeout",
                        priority="P1", predicted_priority="P3")  # restated category is right
    acc.record_feedback("auth", confirmed=False, priority="P2", predicted_priority="P4")
    rows = {r["service"]: r for r in acc.to_rows(4_600.0)}
    web, auth = rows["web"], rows["auth"]
    assert (web["category_verdicts"], web["category_correct"]) == (4, 4)
    assert (web["priority_verdicts"], web["priority_correct"]) == (4, 3)
    assert web["priority_accuracy"] == 0.75
    assert auth["category_accuracy"] is None and auth["priority_accuracy"] == 0.0
    assert web["period_start"] == datetime.fromtimestamp(1_000, UTC)
    assert web["period_end"] == datetime.fromtimestamp(4_600, UTC)
    assert acc.overall()["priority_accuracy"] == 0.6


def test_unknown_share_and_template_growth_and_reset() -> None:
    acc = AccuracyTracker()
    acc.record_lines("web", "timeout", 30)
    acc.record_lines("web", "unknown", 70)
    acc.record_templates("web", 100)
    acc.record_templates("web", 130)
    row = acc.to_rows(60.0)[0]
    assert (row["lines"], row["unknown_lines"], row["unknown_fraction"]) == (100, 70, 0.7)
    assert (row["templates"], row["template_growth"]) == (130, 30)
    acc.reset(60.0)
    acc.record_templates("web", 135)
    row = acc.to_rows(120.0)[0]
    assert (row["lines"], row["unknown_fraction"], row["template_growth"]) == (0, None, 5)
    assert row["period_start"] == datetime.fromtimestamp(60, UTC)


def test_rows_have_one_layout() -> None:
    acc = AccuracyTracker()
    acc.record_lines("a", "unknown")
    acc.record_feedback("b", confirmed=True)
    rows = acc.to_rows(1.0)
    assert [r["service"] for r in rows] == ["a", "b"]
    assert rows[0].keys() == rows[1].keys()
