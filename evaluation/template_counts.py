"""Templates found versus templates emitted, per service, on labelled traffic (the demo fleet).

A fleet check that the Loghub benchmark cannot make: each demo log line carries the name of
the generator template it came from (``attrs.label.template``), so per service the number of
templates the miner ends with (after merges) can be set against the number the generator
used. The target is a ratio within 1.5x either way; grouping accuracy (GA, as the Loghub
scorer defines it: a line counts when its final template holds exactly the lines of its
generator template) is reported beside it.

>>> events = [{"service": "api", "message": f"user {u} logged in from 10.0.0.{i}",
...            "attrs": {"label": {"template": "login"}}}
...           for i, u in enumerate(["ann", "bob", "cid", "dan", "eve", "fay"])]
>>> (c,) = count_templates(events).values()
>>> (c.service, c.emitted, c.found, c.ratio, c.ga)
('api', 1, 1, 1.0, 1.0)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from categorisation.config import MinerConfig, RegistryConfig
from categorisation.registry import TemplateRegistry
from demo.traffic import DemoConfig, generate
from schemas.topics import LOGS

TARGET_RATIO = 1.5  # found / emitted within [1/1.5, 1.5]


@dataclass(frozen=True, slots=True)
class ServiceCount:
    """One service: lines, templates emitted and found, their ratio and the grouping accuracy."""

    service: str
    lines: int
    emitted: int  # distinct generator templates among its lines
    found: int  # live templates of its miner at the end (merged ones not counted)
    ga: float

    @property
    def ratio(self) -> float:
        return self.found / self.emitted if self.emitted else float("inf")

    @property
    def within_target(self) -> bool:
        return 1 / TARGET_RATIO <= self.ratio <= TARGET_RATIO


def _label(event: Mapping[str, Any]) -> str | None:
    attrs = event.get("attrs")
    label = attrs.get("label") if isinstance(attrs, dict) else None
    template = label.get("template") if isinstance(label, dict) else None
    return template if isinstance(template, str) else None


def count_templates(events: Iterable[Mapping[str, Any]], config: MinerConfig | None = None
                    ) -> dict[str, ServiceCount]:
    """Mine the labelled log events as the worker does (a registry: one miner per service);
    count per service."""
    reg = TemplateRegistry(RegistryConfig(miner=config or MinerConfig(), max_services=100_000))
    got: dict[str, list[tuple[str, str]]] = defaultdict(list)  # service -> (label, id)
    for e in events:
        label = _label(e)
        if label is not None:
            service = str(e.get("service", ""))
            got[service].append((label, reg.add(service, str(e.get("message", ""))).template_id))
    out = {}
    for service, pairs in sorted(got.items()):
        final = [(label, reg.resolve(service, tid)) for label, tid in pairs]
        out[service] = ServiceCount(service, len(final), len({lb for lb, _ in final}),
                                    len(reg.miner(service)), grouping_accuracy(final))
    return out


def grouping_accuracy(pairs: list[tuple[str, str]]) -> float:
    """Share of lines whose predicted group is exactly the lines of their true group."""
    if not pairs:
        return 0.0
    true = Counter(label for label, _ in pairs)
    pred = Counter(tid for _, tid in pairs)
    both = Counter(pairs)
    ok = sum(n for (label, tid), n in both.items() if n == true[label] == pred[tid])
    return ok / len(pairs)


def demo_log_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """The first ``n`` log events of a seeded demo timeline (labelled with their template)."""
    out: list[dict[str, Any]] = []
    for topic, event in generate(DemoConfig(start_ms=1_700_000_000_000, seed=seed)):
        if topic == LOGS:
            out.append(event)
            if len(out) >= n:
                break
    return out
