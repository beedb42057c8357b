"""Templates found versus emitted on the demo fleet (``logwarden eval templates``)."""

from __future__ import annotations

import functools

import pytest

from evaluation.template_counts import (
    ServiceCount,
    count_templates,
    demo_log_events,
    grouping_accuracy,
)


@functools.cache
def demo_counts() -> dict[str, ServiceCount]:
    return count_templates(demo_log_events(20_000))


def test_every_service_is_counted_and_stays_within_2x() -> None:
    counts = demo_counts()
    assert len(counts) == 11 and sum(c.lines for c in counts.values()) == 20_000
    assert all(c.emitted <= c.found <= 2 * c.emitted for c in counts.values()), counts


@pytest.mark.xfail(reason="enumerations of 2-5 values that fill no variable elsewhere (e-mail "
                          "kinds, exception triples) are constants by assumption: "
                          "docs/categorisation.md", strict=True)
def test_every_service_within_the_1_5x_target() -> None:
    assert all(c.within_target for c in demo_counts().values())


def test_grouping_accuracy_counts_exact_groups_only() -> None:
    assert grouping_accuracy([("a", "1"), ("a", "1"), ("b", "2")]) == 1.0
    assert grouping_accuracy([("a", "1"), ("b", "1"), ("c", "3")]) == pytest.approx(1 / 3)
    assert grouping_accuracy([]) == 0.0
