"""Learning from people: recent changes to attach, feedback to precision and thresholds.

- ``ChangeLog`` remembers recent deploys / config changes so an anomaly can name the ones
  on its service or a neighbour (peer call graph) within a look-back.
- ``Calibrator`` moves a series' threshold: up (bounded) after a false positive, down
  slowly after a confirmed one, so a noisy series stops paging while a useful one stays.
- ``Quality`` counts verdicts per (detector, variant, series) for precision figures.

>>> c = Calibrator(raise_q=1.0, lower_q=0.2, max_q=3.0)
>>> adj = 0.0
>>> for _ in range(5):
...     adj = c.apply(adj, "false")
>>> adj, round(c.apply(adj, "true"), 2)
(3.0, 2.8)
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from schemas.anomalies import RecentChange


class ChangeLog:
    """Recent changes, newest last, bounded; ``near`` finds the relevant ones."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.changes: deque[RecentChange] = deque(maxlen=capacity)
        self.neighbours: dict[str, set[str]] = {}  # service -> callers and callees

    def add(self, ts_ms: int, service: str, kind: str, description: str) -> None:
        """Remember one change."""
        self.changes.append(RecentChange(ts=ts_ms, service=service, kind=kind,
                                         description=description[:500]))

    def add_edge(self, caller: str, callee: str) -> None:
        """Record that ``caller`` calls ``callee`` (both become neighbours)."""
        self.neighbours.setdefault(caller, set()).add(callee)
        self.neighbours.setdefault(callee, set()).add(caller)

    def near(self, service: str, ts_ms: int, lookback_ms: int, limit: int = 5
             ) -> list[RecentChange]:
        """Changes on ``service`` or a neighbour in ``[ts - lookback, ts]``, newest first."""
        close = self.neighbours.get(service, set()) | {service}
        out: list[RecentChange] = []
        for c in reversed(self.changes):
            if c.ts > ts_ms:
                continue
            if c.ts < ts_ms - lookback_ms:
                continue  # not sorted strictly (late changes): keep looking, bounded deque
            if c.service in close:
                out.append(c)
                if len(out) >= limit:
                    break
        return out


@dataclass(frozen=True)
class Calibrator:
    """Per-series threshold adjustment (in ``-log p`` units) from verdicts."""

    raise_q: float = 1.0
    lower_q: float = 0.2
    max_q: float = 6.0

    def apply(self, adj: float, verdict: str) -> float:
        """The new adjustment after one verdict (true/false/unsure)."""
        if verdict == "false":
            return min(adj + self.raise_q, self.max_q)
        if verdict == "true":
            return max(adj - self.lower_q, 0.0)
        return adj


class Quality:
    """Verdict counts per (detector, variant, series) and the figures derived from them."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], Counter[str]] = {}

    def add(self, detector: str, variant: str, series: str, verdict: str) -> dict[str, float]:
        """Count one verdict; returns the key's figures after it."""
        c = self.counts.setdefault((detector, variant, series), Counter())
        c[verdict if verdict in ("true", "false") else "unsure"] += 1
        return figures(c["true"], c["false"], c["unsure"])


def figures(tp: int, fp: int, unsure: int) -> dict[str, float]:
    """Precision and false-alert rate over the judged anomalies (unsure left out)."""
    judged = tp + fp
    return {"true": tp, "false": fp, "unsure": unsure,
            "precision": tp / judged if judged else 1.0,
            "false_alert_rate": fp / judged if judged else 0.0}
