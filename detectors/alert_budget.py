"""The false-alert budget: a detector-wide threshold offset steered by people's verdicts.

The per-series ``Calibrator`` quiets one noisy series. This loop watches a detector and
variant as a whole, so that the false-alert rate people measure stays under a target
(1 %) while incidents keep being caught. It replays the judged anomalies in the order they
were judged, keeping per (detector, variant) the last ``window`` verdicts and an offset in
``-log p`` units that is added to every series' threshold:

- a false verdict raises the offset by ``step_q * (1 - aim)`` and a true verdict lowers a
  raised one by ``step_q * aim``, with ``aim = target * 0.5``: a quantile tracker, whose
  drift is zero exactly when false alerts are ``aim`` of the judged anomalies, so the
  measured rate settles under the target, not at it; one false alarm costs a quarter step
  that the next 200 confirmed anomalies take back;
- an incident reported missed (``target_kind: incident, verdict: missed``) while the
  measured rate is within the target lowers it a whole step, below zero if need be (more
  sensitive than configured): that is the recall side.

The offset is a pure function of the verdict history, so every worker reading the same
history (from ClickHouse) arrives at the same thresholds, and a restarted worker has them
back at its first calibration without state of its own.

>>> cfg = BudgetSettings()
>>> history = [Verdict(k, "series", "champion", "false" if k % 10 == 0 else "true")
...            for k in range(100)]  # one in ten judged false: far above 1 %
>>> s = steer(history, cfg)[("series", "champion")]
>>> s.offset > 0, s.judged, s.false
(True, 100, 10)
>>> missed = Verdict(100, "", "", "missed")  # over budget: a miss does not lower it
>>> steer([*history, missed], cfg)[("series", "champion")].offset == s.offset
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from detectors.settings import BudgetSettings

MISSED = "missed"


class Verdict(NamedTuple):
    """One judgement, in the order they were given."""

    ts_ms: int
    detector: str  # "" for an incident reported missed: it counts against every detector
    variant: str
    verdict: str  # true / false / unsure / missed


@dataclass
class BudgetState:
    """One detector and variant: its recent verdicts (True = false alert) and offset."""

    window: int
    offset: float = 0.0
    recent: deque[bool] = field(default_factory=deque)
    missed: int = 0  # incidents reported missed

    @property
    def judged(self) -> int:
        """Verdicts in the window (true or false; unsure ones are not counted)."""
        return len(self.recent)

    @property
    def false(self) -> int:
        """False alerts in the window."""
        return sum(self.recent)

    @property
    def rate(self) -> float:
        """The measured false-alert rate over the window (0 with no verdicts)."""
        return self.false / self.judged if self.recent else 0.0

    def judge(self, was_false: bool) -> None:
        """Remember one verdict, forgetting the oldest beyond the window."""
        self.recent.append(was_false)
        if len(self.recent) > self.window:
            self.recent.popleft()


def step(state: BudgetState, verdict: str, cfg: BudgetSettings) -> None:
    """Apply one verdict to one detector's state (the rules in the module docstring)."""
    aim = cfg.target * cfg.aim
    if verdict == MISSED:
        state.missed += 1
        if state.rate <= cfg.target:
            state.offset = max(state.offset - cfg.step_q, cfg.min_q)
        return
    if verdict not in ("true", "false"):
        return
    state.judge(verdict == "false")
    if verdict == "false":
        state.offset = min(state.offset + cfg.step_q * (1 - aim), cfg.max_q)
    elif state.offset > 0:
        state.offset = max(state.offset - cfg.step_q * aim, 0.0)


def steer(verdicts: Iterable[Verdict], cfg: BudgetSettings,
          keys: Iterable[tuple[str, str]] = ()) -> dict[tuple[str, str], BudgetState]:
    """Replay ``verdicts`` (oldest first): each (detector, variant)'s state after them.

    ``keys`` are the detectors a missed incident counts against before any of their own
    anomalies was judged.
    """
    states = {k: BudgetState(cfg.window) for k in keys}
    for v in verdicts:
        if v.verdict == MISSED and not v.detector:
            for state in states.values():
                step(state, MISSED, cfg)
            continue
        key = (v.detector, v.variant)
        if key not in states:
            states[key] = BudgetState(cfg.window)
        step(states[key], v.verdict, cfg)
    return states
