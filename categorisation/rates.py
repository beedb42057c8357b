"""Per-template line rates: new templates, spikes and templates that vanish.

Lines are counted per (service, template id) in fixed windows of ``window_s`` seconds of
event time (one clock for all services: the latest timestamp seen; late lines count in the
current window). Per line this is a dict lookup and an increment; the work happens when a
window closes, once per series:

- NEW: a template first seen more than ``warmup_s`` after its service's first line. Reported
  at once by `add`. (A template forgotten under the ``max_series`` bound and seen again is
  reported again.)
- SPIKE: a window count at least ``spike_min_count``, ``spike_ratio`` times the baseline and
  ``spike_z`` scales above it, after ``min_history`` windows. The baseline is an EWMA of the
  count; the scale is the larger of an EWMA of absolute deviations and the Poisson
  ``sqrt(baseline)``. Updates are clipped at 3 scales so a spike barely moves the baseline.
  One event per onset.
- VANISHED: a steady template (seen in ``steady_presence`` of windows, at least
  ``steady_min_mean`` a window, over ``min_history`` windows) absent ``vanish_windows``
  windows in a row while its service still logs. (A whole service going quiet is another
  detector's business.) One event until the template comes back.

>>> r = TemplateRates(RatesConfig(window_s=60, warmup_s=600, min_history=5, vanish_windows=3))
>>> events = []
>>> for minute in range(30):
...     for i in range(10 if minute != 20 else 200):
...         events += r.add("web", "t-ok", 60.0 * minute + i / 300, "GET <*> 200")
...     if minute < 25:
...         events += r.add("web", "t-cron", 60.0 * minute + 1, "cron job <*> done")
...     if minute == 15:
...         events += r.add("web", "t-new", 60.0 * minute + 2, "cache <*> rebuilt")
>>> [(e.kind, e.template_id, e.ts) for e in events + r.tick(1800.0)]
[('new', 't-new', 902.0), ('spike', 't-ok', 1260.0), ('vanished', 't-cron', 1680.0)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import orjson

from categorisation.config import RatesConfig


@dataclass(frozen=True, slots=True)
class NewTemplate:
    """A template first seen after its service's warm-up."""

    service: str
    template_id: str
    template: str
    ts: float  # the first line's time
    kind: Literal["new"] = "new"


@dataclass(frozen=True, slots=True)
class TemplateSpike:
    """A template's count in one window jumped far above its baseline."""

    service: str
    template_id: str
    template: str
    ts: float  # end of the window
    count: int
    baseline: float
    score: float  # scales above the baseline
    kind: Literal["spike"] = "spike"


@dataclass(frozen=True, slots=True)
class TemplateVanished:
    """A steady template stopped while its service kept logging."""

    service: str
    template_id: str
    template: str
    ts: float  # end of the window that made it vanished
    baseline: float  # count per window before it stopped
    last_seen: float
    kind: Literal["vanished"] = "vanished"


TemplateEvent = NewTemplate | TemplateSpike | TemplateVanished
_NONE: tuple[TemplateEvent, ...] = ()
_SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class _Series:
    template: str
    last_seen: float
    count: int = 0  # in the open window
    windows: int = 0  # closed windows of history
    mean: float = 0.0
    dev: float = 0.0
    presence: float = 0.0
    absent: int = 0  # closed windows in a row without a line
    steady: bool = False  # as of the last window with lines
    seen_mean: float = 0.0  # the baseline as of the last window with lines
    spiking: bool = False
    vanished: bool = False


@dataclass(slots=True)
class _Service:
    first_seen: float
    count: int = 0  # lines in the open window


class TemplateRates:
    """Counts lines per (service, template) per window and reports new/spike/vanished."""

    def __init__(self, config: RatesConfig | None = None) -> None:
        self.config = config or RatesConfig()
        self._series: dict[tuple[str, str], _Series] = {}
        self._services: dict[str, _Service] = {}
        self._window: int | None = None  # index of the open window
        self.forgotten = 0  # series dropped by the max_series bound

    def __len__(self) -> int:
        return len(self._series)

    def add(self, service: str, template_id: str, now: float, template: str = "",
            n: int = 1) -> tuple[TemplateEvent, ...]:
        """Count ``n`` lines at ``now``; events of closed windows and a NEW one, if any."""
        w = int(now // self.config.window_s)
        events = self._roll(w) if self._window is None or w > self._window else _NONE
        svc = self._services.get(service)
        if svc is None:
            svc = self._services[service] = _Service(now)
        svc.count += n
        key = (service, template_id)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(template, now)
            if now - svc.first_seen >= self.config.warmup_s:
                events = (*events, NewTemplate(service, template_id, template, now))
        elif template:
            s.template = template
        s.count += n
        s.last_seen = now
        return events

    def tick(self, now: float) -> list[TemplateEvent]:
        """Close the windows that ended by ``now`` (for a timer, when lines stop coming)."""
        w = int(now // self.config.window_s)
        return list(self._roll(w)) if self._window is not None and w > self._window else []

    def _roll(self, w: int) -> tuple[TemplateEvent, ...]:
        if self._window is None:
            self._window = w
            return _NONE
        # Past a long gap nothing more changes but the EWMAs' decay: cap the replay.
        cap = max(self.config.vanish_windows, self.config.min_history) + 1
        events = self._close((self._window + 1) * self.config.window_s)  # the open one
        for idx in range(max(self._window + 1, w - cap), w):
            events += self._close((idx + 1) * self.config.window_s)
        self._window = w
        if len(self._series) > self.config.max_series:
            self._forget()
        return tuple(events)

    def _close(self, end: float) -> list[TemplateEvent]:
        """Judge and fold one window into every series' baseline."""
        cfg = self.config
        a = cfg.alpha
        events: list[TemplateEvent] = []
        alive = {name for name, svc in self._services.items() if svc.count}
        for (service, tid), s in self._series.items():
            c = s.count
            scale = max(s.dev * 1.25, math.sqrt(max(s.mean, 1.0)))
            judged = s.windows >= cfg.min_history
            if c:
                z = (c - s.mean) / scale
                spike = (judged and c >= cfg.spike_min_count and z >= cfg.spike_z
                         and c >= cfg.spike_ratio * s.mean)
                if spike and not s.spiking:
                    events.append(TemplateSpike(service, tid, s.template, end, c,
                                                round(s.mean, 3), round(z, 2)))
                s.spiking = spike
                s.absent = 0
                s.vanished = False
            else:
                s.spiking = False
                s.absent += 1
                if (s.steady and not s.vanished and s.absent >= cfg.vanish_windows
                        and service in alive):
                    events.append(TemplateVanished(service, tid, s.template, end,
                                                   round(s.seen_mean, 3), s.last_seen))
                    s.vanished = True
            x = min(c, s.mean + 3 * scale) if judged else c
            if s.windows == 0:
                s.mean = x
            else:
                s.dev += a * (abs(x - s.mean) - s.dev)
                s.mean += a * (x - s.mean)
            if s.windows:
                s.presence += a * ((1.0 if c else 0.0) - s.presence)
            else:
                s.presence = 1.0  # a series starts with a line
            s.windows += 1
            if c:
                s.seen_mean = s.mean
                s.steady = (s.windows >= cfg.min_history and s.presence >= cfg.steady_presence
                            and s.mean >= cfg.steady_min_mean)
            s.count = 0
        for svc in self._services.values():
            svc.count = 0
        return events

    def snapshot(self) -> bytes:
        """The state as compact JSON (for a changelog table); `restore` reads it back."""
        series = [[svc, tid, s.template, s.last_seen, s.count, s.windows, s.mean, s.dev,
                   s.presence, s.absent, s.steady, s.seen_mean, s.spiking, s.vanished]
                  for (svc, tid), s in self._series.items()]
        services = {n: [v.first_seen, v.count] for n, v in self._services.items()}
        return orjson.dumps({"v": _SNAPSHOT_VERSION, "window": self._window,
                             "series": series, "services": services})

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`."""
        doc = orjson.loads(data)
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown template rates snapshot version {doc.get('v')!r}")
        self._window = doc["window"]
        self._services = {n: _Service(float(f), int(c)) for n, (f, c) in doc["services"].items()}
        self._series = {(row[0], row[1]): _Series(*row[2:]) for row in doc["series"]}

    def _forget(self) -> None:
        """Drop the longest-absent series down to 90 % of the bound."""
        keep = int(self.config.max_series * 0.9)
        order = sorted(self._series.items(), key=lambda kv: kv[1].absent, reverse=True)
        for key, _ in order[: len(order) - keep]:
            del self._series[key]
            self.forgotten += 1
        live = {svc for svc, _ in self._series}
        for name in [n for n in self._services if n not in live]:
            del self._services[name]
