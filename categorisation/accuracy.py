"""How well triage does, per service: bookkeeping from feedback and labelled lines.

Per service and reporting period it counts lines and lines left ``unknown``, category and
priority verdicts (a confirmation is right; a correction is wrong, unless it restates what
triage said), and the template count at the start and end of the period (growth).

Lines that carry their ground truth (a label: template, category, priority) add labelled
figures: grouping accuracy as Loghub defines it (a line counts when its labelled group and
its template are the same set of lines) and category / priority accuracy.

>>> acc = AccuracyTracker(period_start=0.0)
>>> acc.record_lines("api", "timeout", 90)
>>> acc.record_lines("api", "unknown", 10)
>>> acc.record_feedback("api", confirmed=True)
>>> acc.record_feedback("api", confirmed=False, category="authorisation",
...                     predicted_category="authentication", predicted_priority="P3")
>>> acc.record_templates("api", 40)
>>> acc.record_templates("api", 55)
>>> row = acc.to_rows(3600.0)[0]
>>> row["unknown_fraction"], row["category_accuracy"], row["priority_accuracy"]
(0.1, 0.5, 1.0)
>>> row["templates"], row["template_growth"]
(55, 15)
>>> for label, tid in [("login", "t1"), ("login", "t1"), ("logout", "t2"), ("logout", "t3")]:
...     acc.record_labelled("api", tid, label_template=label)
>>> acc.to_rows(3600.0)[0]["grouping_accuracy"]  # logout was split over two templates
0.5
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from categorisation.categories import UNKNOWN


@dataclass(slots=True)
class _Tally:
    lines: int = 0
    unknown: int = 0
    category_verdicts: int = 0
    category_correct: int = 0
    priority_verdicts: int = 0
    priority_correct: int = 0
    templates_start: int | None = None
    templates: int = 0
    # labelled lines: (label, template id) -> lines; category / priority hits
    groups: Counter[tuple[str, str]] = field(default_factory=Counter)
    labelled_category: int = 0
    labelled_category_correct: int = 0
    labelled_priority: int = 0
    labelled_priority_correct: int = 0


MAX_LABEL_PAIRS = 100_000  # per service and period: the memory bound of grouping accuracy


def grouping_accuracy(groups: Counter[tuple[str, str]]) -> float | None:
    """Loghub's GA: the share of lines whose labelled group maps to exactly one template
    that holds no other group's lines."""
    total = sum(groups.values())
    if not total:
        return None
    tids_of: dict[str, set[str]] = {}
    labels_of: dict[str, set[str]] = {}
    for label, tid in groups:
        tids_of.setdefault(label, set()).add(tid)
        labels_of.setdefault(tid, set()).add(label)
    correct = sum(n for (label, tid), n in groups.items()
                  if len(tids_of[label]) == 1 and len(labels_of[tid]) == 1)
    return correct / total


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


class AccuracyTracker:
    """Categorisation and triage accuracy, unknown share and template growth per service."""

    def __init__(self, period_start: float = 0.0) -> None:
        self.period_start = period_start
        self._tallies: dict[str, _Tally] = {}

    def _tally(self, service: str) -> _Tally:
        t = self._tallies.get(service)
        if t is None:
            t = self._tallies[service] = _Tally()
        return t

    def record_lines(self, service: str, category: str, n: int = 1) -> None:
        """Count ``n`` triaged lines of one category (batch them: this is per line)."""
        t = self._tally(service)
        t.lines += n
        if category == UNKNOWN:
            t.unknown += n

    def record_feedback(self, service: str, *, confirmed: bool, category: str | None = None,
                        priority: str | None = None, predicted_category: str | None = None,
                        predicted_priority: str | None = None) -> None:
        """Count one verdict: a confirmation is right on both; a correction wrong where given."""
        t = self._tally(service)
        if confirmed:
            t.category_verdicts += 1
            t.category_correct += 1
            t.priority_verdicts += 1
            t.priority_correct += 1
            return
        if category is not None:
            t.category_verdicts += 1
            t.category_correct += category == predicted_category
        if priority is not None:
            t.priority_verdicts += 1
            t.priority_correct += priority == predicted_priority

    def record_labelled(self, service: str, template_id: str, *,
                        label_template: str | None = None, category: str | None = None,
                        label_category: str | None = None, priority: str | None = None,
                        label_priority: str | None = None) -> None:
        """Count one line that carries its ground truth (any of the three labels)."""
        t = self._tally(service)
        if label_template is not None and (len(t.groups) < MAX_LABEL_PAIRS
                                           or (label_template, template_id) in t.groups):
            t.groups[label_template, template_id] += 1
        if label_category is not None:
            t.labelled_category += 1
            t.labelled_category_correct += category == label_category
        if label_priority is not None:
            t.labelled_priority += 1
            t.labelled_priority_correct += priority == label_priority

    def record_templates(self, service: str, count: int) -> None:
        """Note a service's current template count (the first call of a period is the start)."""
        t = self._tally(service)
        if t.templates_start is None:
            t.templates_start = count
        t.templates = count

    def overall(self) -> dict[str, float | None]:
        """Fleet-wide accuracies and unknown share of the period."""
        ts = self._tallies.values()
        return {
            "category_accuracy": _ratio(sum(t.category_correct for t in ts),
                                        sum(t.category_verdicts for t in ts)),
            "priority_accuracy": _ratio(sum(t.priority_correct for t in ts),
                                        sum(t.priority_verdicts for t in ts)),
            "unknown_fraction": _ratio(sum(t.unknown for t in ts), sum(t.lines for t in ts)),
        }

    def to_rows(self, now: float) -> list[dict[str, Any]]:
        """One row per service for the period up to ``now`` (accuracies None without data)."""
        start = datetime.fromtimestamp(self.period_start, UTC)
        end = datetime.fromtimestamp(now, UTC)
        rows = []
        for service, t in sorted(self._tallies.items()):
            rows.append({
                "period_start": start,
                "period_end": end,
                "service": service,
                "lines": t.lines,
                "unknown_lines": t.unknown,
                "unknown_fraction": _ratio(t.unknown, t.lines),
                "category_verdicts": t.category_verdicts,
                "category_correct": t.category_correct,
                "category_accuracy": _ratio(t.category_correct, t.category_verdicts),
                "priority_verdicts": t.priority_verdicts,
                "priority_correct": t.priority_correct,
                "priority_accuracy": _ratio(t.priority_correct, t.priority_verdicts),
                "templates": t.templates,
                "template_growth": t.templates - (t.templates_start or 0),
                "labelled_lines": sum(t.groups.values()),
                "grouping_accuracy": grouping_accuracy(t.groups),
                "labelled_category_accuracy": _ratio(t.labelled_category_correct,
                                                     t.labelled_category),
                "labelled_priority_accuracy": _ratio(t.labelled_priority_correct,
                                                     t.labelled_priority),
            })
        return rows

    def reset(self, now: float) -> None:
        """Start a new period at ``now``; template counts carry over as its start."""
        self.period_start = now
        self._tallies = {s: _Tally(templates_start=t.templates, templates=t.templates)
                         for s, t in self._tallies.items() if t.templates_start is not None}
