"""Categorisation of every log line as it streams by: template, category, priority, team.

`Categoriser` is the pure object behind ``IngestProcessor(categorise=...)``: per line it
mines the template (`TemplateRegistry`, one miner per service), triages it (`Triage`: rules,
then people's corrections), counts it for rate events (`TemplateRates`) and for accuracy
(`AccuracyTracker`). The worker (``streams/agents/ingest.py``) drains what it produced:
template events, changed templates, accuracy rows, and per-service snapshots for the
compacted state topic that keeps template ids stable across restarts and workers.

>>> c = Categoriser()
>>> a = c("api", "Connection to 10.0.0.7 timed out after 30s", "WARN", 1_000)
>>> b = c("api", "Connection to 10.0.0.9 timed out after 12s", "ERROR", 2_000)
>>> a[0] == b[0], a[1:], b[1:]
(True, ('timeout', 'P3'), ('timeout', 'P2'))
>>> twin = Categoriser()
>>> twin.restore("api", c.snapshot("api") or b"")
>>> twin("api", "Connection to 10.0.0.1 timed out after 1s", "WARN", 3_000)[0] == a[0]
True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from categorisation.accuracy import AccuracyTracker
from categorisation.categories import CategoriesConfig
from categorisation.categories import Categoriser as RuleCategoriser
from categorisation.config import MinerConfig, RatesConfig, RegistryConfig, TeamsConfig
from categorisation.rates import TemplateEvent, TemplateRates
from categorisation.registry import TemplateRegistry
from categorisation.settings import CategorisationConfig, CategorisationSettings
from categorisation.triage import Triage, parse_priority
from schemas.changes import Feedback
from sinks.clickhouse import rows

_SNAPSHOT_VERSION = 1
EXAMPLE_CHARS = 1024
CONFIRM = frozenset({"confirm", "confirmed", "correct", "right", "true", "yes", "ok", "agree"})
REJECT = frozenset({"wrong", "incorrect", "false", "no", "reject", "rejected", "disagree"})


def _example(message: str) -> str:
    """The first line of a template as kept: cut, and valid UTF-8 (no lone surrogates)."""
    text = message[:EXAMPLE_CHARS]
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


@dataclass(slots=True)
class _Template:
    service: str
    template: str
    first_seen: int  # epoch ms of the first line
    last_seen: int
    count: int  # lines so far (the miner's cluster size, restored with it)
    example: str
    category: str = ""
    priority: str = ""
    team: str = ""
    level: str = ""  # of the latest line


class Categoriser:
    """Template, category and priority of each line; events, rows and state on the side."""

    def __init__(self, config: CategorisationConfig | None = None,
                 settings: CategorisationSettings | None = None, *,
                 rates: RatesConfig | None = None, clock: Callable[[], float] = time.time
                 ) -> None:
        s = settings or CategorisationSettings()
        cfg = config or CategorisationConfig(CategoriesConfig(), TeamsConfig(), {})
        self.registry = TemplateRegistry(RegistryConfig(
            miner=MinerConfig(max_clusters=s.max_templates, cache_size=20_000),
            masking=cfg.masking, max_services=s.max_services))
        self.triage = Triage(RuleCategoriser(cfg.categories), cfg.teams)
        self.rates = TemplateRates(rates or RatesConfig(max_series=50_000))
        self.accuracy = AccuracyTracker(period_start=clock())
        self.clock = clock
        self._templates: dict[str, _Template] = {}  # ids hash their service: one dict for all
        self._dirty: set[str] = set()  # template ids changed since `template_rows`
        self._dirty_services: set[str] = set()  # services changed since their snapshot
        self._lines: Counter[tuple[str, str]] = Counter()  # (service, category) -> lines
        self._events: list[tuple[Any, ...]] = []  # template_events rows
        self._prune_at = 1000  # prune evicted templates beyond this many
        self._last_ts = 0  # event time of the latest line, epoch ms
        self._clock_ref: tuple[int, float] | None = None  # (event ms, wall s) for `tick`

    def __call__(self, service: str, message: str, level: str, ts_ms: int | None = None,
                 http_status: int | None = None, peer_ok: bool | None = None,
                 user_outcome: str | None = None,
                 label: dict[str, Any] | None = None) -> tuple[str, str, str]:
        """Categorise one line: (template id, category, priority P1..P4).

        ``label`` is the line's ground truth when it carries one (``attrs.label``:
        ``template``, ``category``, ``priority``): it feeds the labelled accuracy."""
        m = self.registry.add(service, message)
        tid, template = m.template_id, m.template
        if m.change == "changed":
            self._merged(ts_ms)
        t = self.triage.triage(service, tid, template, level, http_status, peer_ok,
                               user_outcome)
        if ts_ms is None:
            ts_ms = int(self.clock() * 1000)
        info = self._templates.get(tid)
        if info is None:
            info = self._templates[tid] = _Template(service, template, ts_ms, ts_ms, m.size,
                                                    _example(message))
            if len(self._templates) > self._prune_at:
                self._prune()
        else:
            info.template = template
            info.count = m.size
            if ts_ms > info.last_seen:
                info.last_seen = ts_ms
        info.category, info.priority, info.team = t.category, t.priority, t.team
        info.level = level
        self._dirty.add(tid)
        self._dirty_services.add(service)
        self._lines[service, t.category] += 1
        if label:
            self.accuracy.record_labelled(
                service, tid, label_template=_str(label.get("template")),
                category=t.category, label_category=_str(label.get("category")),
                priority=t.priority, label_priority=_str(label.get("priority")))
        self._last_ts = ts_ms
        events = self.rates.add(service, tid, ts_ms / 1000, template)
        if events:
            self._rate_events(events)
        return tid, t.category, t.priority

    def _rate_events(self, events: tuple[TemplateEvent, ...] | list[TemplateEvent]) -> None:
        for e in events:
            ts = int(e.ts * 1000)
            # What alert rules select on (level, category) and show (an example line).
            info = self._templates.get(e.template_id)
            details: dict[str, Any] = {} if info is None else {
                "level": info.level, "category": info.category, "priority": info.priority,
                "team": info.team, "sample_lines": [info.example]}
            if e.kind == "new":
                self._events.append(rows.template_event_row(
                    ts, e.service, e.template_id, "new", e.template, 1.0, 0.0, details))
            elif e.kind == "spike":
                self._events.append(rows.template_event_row(
                    ts, e.service, e.template_id, "spike", e.template, float(e.count),
                    e.baseline, {**details, "score": e.score}))
            else:
                self._events.append(rows.template_event_row(
                    ts, e.service, e.template_id, "vanished", e.template, 0.0, e.baseline,
                    {**details, "last_seen": e.last_seen}))

    def _merged(self, ts_ms: int | None) -> None:
        """Fold templates the miner merged into their survivor: counts, first seen and
        corrections carry over; a ``merged`` event keeps the old id resolvable in storage."""
        for service, old, new in self.registry.pop_merges():
            template = self.registry.miner(service).text(new) or ""
            gone = self._templates.pop(old, None)
            self._dirty.discard(old)
            self.triage.alias(old, new, template)
            keep = self._templates.get(new)
            if gone is not None and keep is not None:
                # the survivor's row carries the absorbed lines now, even when the merge
                # came from another cluster's line and the survivor sees none
                keep.first_seen = min(keep.first_seen, gone.first_seen)
                keep.last_seen = max(keep.last_seen, gone.last_seen)
                keep.count = max(keep.count, self.registry.miner(service).size(new))
                self._dirty.add(new)
            self._events.append(rows.template_event_row(
                ts_ms or self._last_ts or int(self.clock() * 1000), service, old, "merged",
                template, 0.0, 0.0, {"into": new}))

    def tick(self, now: float) -> None:
        """Close rate windows when lines stop: event time advances with the wall clock."""
        if not self._last_ts:
            return
        ref = self._clock_ref
        if ref is None or ref[0] != self._last_ts:
            self._clock_ref = (self._last_ts, now)
            return
        self._rate_events(self.rates.tick((ref[0] / 1000) + (now - ref[1])))

    def drain_events(self) -> list[tuple[Any, ...]]:
        """``template_events`` rows since the last call: new, spike, vanished, explosion."""
        for x in self.registry.pop_events():
            self._events.append(rows.template_event_row(
                self._last_ts or int(self.clock() * 1000), x.service, "", "explosion",
                " | ".join(x.samples), float(x.new_in_window), float(x.templates),
                {"message": x.message, "lines": x.lines, "created": x.created,
                 "window_lines": x.window_lines}))
        events, self._events = self._events, []
        return events

    def template_rows(self, now: float) -> list[tuple[Any, ...]]:
        """``templates`` rows of the templates that changed since the last call."""
        now_ms = int(now * 1000)
        out = []
        for tid in self._dirty:
            i = self._templates.get(tid)
            if i is not None:
                out.append(rows.template_row(i.service, tid, i.template, i.category,
                                             i.priority, i.team, i.first_seen, i.last_seen,
                                             i.count, i.example, now_ms))
        self._dirty.clear()
        return out

    def _prune(self) -> None:
        """Forget templates the miners evicted (keeps memory bounded under a flood)."""
        live: set[str] = set()
        for service in {i.service for i in self._templates.values()}:
            if service in self.registry:
                live.update(self.registry.miner(service).templates())
        self._templates = {k: v for k, v in self._templates.items() if k in live}
        self._dirty &= live
        self._prune_at = 2 * len(self._templates) + 1000  # amortised: O(1) a new template

    def accuracy_rows(self, now: float) -> list[tuple[Any, ...]]:
        """``categorisation_accuracy`` rows of the period ending ``now``; starts the next."""
        for (service, category), n in self._lines.items():
            self.accuracy.record_lines(service, category, n)
        for service in {s for s, _ in self._lines}:
            if service in self.registry:
                self.accuracy.record_templates(service, len(self.registry.miner(service)))
        self._lines.clear()
        out = [rows.accuracy_row(r) for r in self.accuracy.to_rows(now)]
        self.accuracy.reset(now)
        return out

    def apply_feedback(self, f: Feedback) -> bytes | None:
        """Learn from a verdict on a template's category; returns the correction to persist."""
        if f.target_kind != "category":
            return None
        tid = f.target_id
        info = self._templates.get(tid)
        service = info.service if info else str(f.attrs.get("service") or "")
        if info is None:  # an id merged since: its survivor
            found = ((service, self.registry.resolve(service, tid)) if service
                     else self.registry.find(tid))
            if found is not None:
                service, tid = found
                info = self._templates.get(tid)
        template = info.template if info else str(f.attrs.get("template") or "")
        try:
            prio = parse_priority(f.priority) if f.priority else None
        except ValueError:
            return None  # a person's typo: the feedback row keeps it, triage ignores it
        corrected = bool(f.category) or prio is not None
        if service and (corrected or f.verdict in CONFIRM or f.verdict in REJECT):
            wrong = "" if f.verdict in REJECT and not corrected else None
            self.accuracy.record_feedback(
                service, confirmed=not corrected and f.verdict in CONFIRM,
                category=f.category or wrong, priority=prio,
                predicted_category=info.category if info else None,
                predicted_priority=info.priority if info else None)
        if not corrected:
            return None
        try:
            self.triage.apply_feedback(tid, template, category=f.category or None,
                                       priority=prio)
        except ValueError:
            return None
        if info is not None:
            info.category = f.category or info.category
            info.priority = prio or info.priority
            self._dirty.add(tid)
        c = next(c for c in self.triage.corrections if c.template_id == tid)
        return orjson.dumps({"v": _SNAPSHOT_VERSION, "template_id": tid, "template": template,
                             "category": c.category, "priority": c.priority,
                             "ts": f.ts.timestamp()})

    def restore_corrections(self, records: list[bytes]) -> None:
        """Re-apply persisted corrections (from `apply_feedback`), oldest first."""
        docs = sorted((orjson.loads(r) for r in records), key=lambda d: float(d["ts"]))
        for d in docs:
            self.triage.apply_feedback(str(d["template_id"]), str(d["template"]),
                                       category=d["category"], priority=d["priority"])

    @property
    def dirty_services(self) -> set[str]:
        """Services whose state changed since their last `snapshot`."""
        return self._dirty_services

    def snapshot(self, service: str) -> bytes | None:
        """One service's miner and template metadata, for the compacted state topic."""
        self._dirty_services.discard(service)
        reg = self.registry.snapshot_service(service)
        if reg is None:
            return None
        meta = {tid: [i.first_seen, i.last_seen, i.count, i.example]
                for tid in self.registry.miner(service).templates()
                if (i := self._templates.get(tid)) is not None}
        return orjson.dumps({"v": _SNAPSHOT_VERSION, "registry": orjson.Fragment(reg),
                             "templates": meta})

    def restore(self, service: str, data: bytes) -> None:
        """Replace one service's state with a `snapshot`: same ids, counts and first seen."""
        doc = orjson.loads(data)
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown categoriser snapshot version {doc.get('v')!r}")
        self.registry.restore_service(service, orjson.dumps(doc["registry"]))
        texts = self.registry.miner(service).templates()
        for tid in [k for k, v in self._templates.items() if v.service == service]:
            if tid not in texts:
                del self._templates[tid]
        for tid, (first, last, count, example) in doc["templates"].items():
            if tid in texts:
                old = self._templates.get(tid)
                info = _Template(service, texts[tid], int(first), int(last), int(count),
                                 str(example))
                if old is not None:
                    info.category, info.priority, info.team = (old.category, old.priority,
                                                               old.team)
                self._templates[tid] = info
        self._dirty_services.discard(service)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
