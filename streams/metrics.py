"""The pipeline's own health: a Prometheus registry read at scrape time, and a JSON view."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from streams.agents.ingest import IngestService
from streams.consumer import BatchConsumer, Progress


class PipelineCollector(Collector):
    """Counters of the ingest stage, the writers and the producer, read when scraped."""

    def __init__(self, ingest: IngestService) -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[Any]:
        counts = self.ingest.processor.counts
        events_in = CounterMetricFamily("logwarden_events_in", "Messages consumed",
                                        labels=["topic"])
        dead = CounterMetricFamily("logwarden_dead_letters", "Messages dead-lettered",
                                   labels=["stage"])
        dropped = CounterMetricFamily("logwarden_dropped", "Events left out, by reason",
                                      labels=["reason"])
        for key, n in counts.items():
            kind, _, rest = key.partition(".")
            if kind == "in":
                events_in.add_metric([rest], n)
            elif kind == "dead_letter":
                dead.add_metric([rest], n)
            elif key in ("duplicate", "late_dropped", "replayed_landed"):
                dropped.add_metric([key], n)  # replayed_landed: stored before a crash
        yield from (events_in, dead, dropped)
        folded = CounterMetricFamily(
            "logwarden_series_folded", "Events counted in an 'other' series past a cap",
            labels=["kind"])
        for kind, n in self.ingest.processor.caps.folded.items():
            folded.add_metric([kind], n)
        yield folded
        yield CounterMetricFamily("logwarden_windows_emitted", "Windows emitted",
                                  value=counts.get("windows", 0))
        out = CounterMetricFamily("logwarden_rows_written", "Rows written to ClickHouse",
                                  labels=["table"])
        pending = GaugeMetricFamily("logwarden_rows_pending", "Rows waiting to be written",
                                    labels=["table"])
        retries = CounterMetricFamily("logwarden_insert_retries", "Insert retries",
                                      labels=["table"])
        rejected = CounterMetricFamily("logwarden_rows_rejected", "Rows ClickHouse refused",
                                       labels=["table"])
        latency = GaugeMetricFamily("logwarden_insert_latency_seconds",
                                    "Latency of the last insert", labels=["table"])
        for table, w in self.ingest.rt.writers.items():
            st = w.stats
            out.add_metric([table], st.rows_written)
            pending.add_metric([table], st.pending)
            retries.add_metric([table], st.retries)
            rejected.add_metric([table], st.rejected)
            latency.add_metric([table], st.last_flush_latency_s)
        yield from (out, pending, retries, rejected, latency)
        lag = GaugeMetricFamily("logwarden_consumer_lag", "Messages behind, per partition",
                                labels=["partition"])
        for tp, n in self.ingest.lag.items():
            lag.add_metric([tp], n)
        yield lag
        yield GaugeMetricFamily("logwarden_batch_seconds", "Time to process the last batch",
                                value=self.ingest.last_batch_s)
        yield CounterMetricFamily("logwarden_produce_errors", "Failed internal produces",
                                  value=self.ingest.rt.produce_errors)
        redactor = self.ingest.redactor
        if redactor is not None:
            red = CounterMetricFamily("logwarden_redactions", "PII matches redacted or "
                                      "hashed at ingest, by privacy rule", labels=["rule"])
            for rule, n in sorted(redactor.counts.items()):
                red.add_metric([rule], n)
            yield red


def registry_for(ingest: IngestService) -> CollectorRegistry:
    """A registry holding the pipeline collector."""
    reg = CollectorRegistry()
    reg.register(PipelineCollector(ingest))
    return reg


class RebalanceWatch(faust.Sensor):
    """How long the Faust group's rebalance has been going on. The alerting and incident
    agents stand still while it does (their partitions are paused and their tables
    recovered), so one that never ends silences alerting: Faust has had such hangs
    (faust-streaming#133), and a worker killed mid-rebalance leaves the survivors to finish
    it. ``progress`` says stalled after ``stall_after_s``, so /api/health turns 503 and a
    liveness probe restarts the worker."""

    def __init__(self, stall_after_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stall_after_s, self.clock = stall_after_s, clock
        self.since: float | None = None  # when the rebalance under way began

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        if self.since is None:  # one that starts over before it ends goes on counting
            self.since = self.clock()
        return dict(super().on_rebalance_start(app))

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        self.since = None

    def progress(self) -> Progress:
        """Stalled once the rebalance under way has lasted ``stall_after_s``."""
        took = 0.0 if self.since is None else self.clock() - self.since
        if took > self.stall_after_s:
            return Progress(False, f"stream agents (alerting, incidents): the Kafka group's "
                            f"rebalance has not finished for {took:.0f} s")
        return Progress(True)


def health(ingest: IngestService, others: Sequence[BatchConsumer] = (),
           checks: Sequence[Callable[[], Progress]] = ()) -> dict[str, Any]:
    """The JSON health document served at /api/health: ``stalled`` (a 503) when a stage
    has stopped making progress (`BatchConsumer.progress`, and ``checks``: the Faust
    agents' `RebalanceWatch`)."""
    rt = ingest.rt
    stuck = [p.reason for c in (ingest, *others) if not (p := c.progress()).ok]
    stuck += [p.reason for check in checks if not (p := check()).ok]
    return {
        "status": "stalled" if stuck else "ok",
        "problems": stuck,
        "uptime_s": round(time.time() - rt.started_at, 1),
        "kafka": rt.settings.kafka.bootstrap_servers(),
        "counts": dict(ingest.processor.counts),
        "series_folded": dict(ingest.processor.caps.folded),
        "batches": ingest.batches,
        "consumer_lag": {tp: n for c in (ingest, *others) for tp, n in c.lag.items()},
        # which partitions this worker owns, by stage (several workers share them)
        "partitions": {c.stage.name: sorted(f"{t}:{p}" for t, p in c.assigned)
                       for c in (ingest, *others)},
        "writers": {t: vars(w.stats) for t, w in rt.writers.items()},
        "produce_errors": rt.produce_errors,
    }
