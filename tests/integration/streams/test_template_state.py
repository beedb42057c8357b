"""Template state through the real broker and chDB: a new categoriser resumes the same ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from schemas.changes import Feedback
from sinks.clickhouse.client import Client
from streams.agents.categorise import CategoriseStage, TemplateState
from streams.categorise import Categoriser
from streams.runtime import Runtime
from streams.topics import STATE_TOPIC_CONFIG, ensure_topics

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000
LINES = [f"payment {i} for order {i * 7} declined by issuer" for i in range(20)] + [
    f"user u{i} logged in from 10.0.0.{i}" for i in range(20)] + [
    f"cache warmed in {i}ms, {i * 3} keys" for i in range(20)]


@pytest.fixture
def runtime(make_runtime: Callable[[int], Runtime]) -> Runtime:
    return make_runtime(3)


def test_state_topic_round_trip_keeps_ids_and_corrections(runtime: Runtime) -> None:
    topic = f"it-template-state-{uuid.uuid4().hex[:8]}"
    ensure_topics(runtime.settings.kafka.bootstrap_servers(), {topic: 3}, STATE_TOPIC_CONFIG)
    services = [f"svc-{uuid.uuid4().hex[:6]}" for _ in range(4)]
    first = Categoriser()
    ids = {(svc, line): first(svc, line, "INFO", T0 + i)[0]
           for i, line in enumerate(LINES) for svc in services}
    state = TemplateState(runtime, first, topic)
    assert state.save_dirty() == len(services)
    tid = ids[(services[0], LINES[0])]
    fix = first.apply_feedback(Feedback(ts=datetime.now(UTC), target_kind="category",
                                        target_id=tid, verdict="correct",
                                        category="payment_declined", priority="P2"))
    assert fix is not None
    state.save_correction(tid, fix)
    first("extra", "one more service", "INFO", T0)
    state.save_dirty()  # a second snapshot of nothing old: latest per key still complete
    state.flush()

    second = Categoriser()
    resumed = TemplateState(runtime, second, topic)
    assert resumed.restore(resumed.read(timeout=30)) == len(services) + 2  # + extra + fix
    for (svc, line), want in ids.items():
        got = second(svc, line.replace("7", "8"), "INFO", T0 + 10_000)
        assert got[0] == want
    assert second(services[1], LINES[0], "INFO", T0)[1:] == ("payment_declined", "P2")


async def test_stage_writes_templates_and_events_to_clickhouse(runtime: Runtime,
                                                               chdb_store: Client) -> None:
    cat = Categoriser()
    stage = CategoriseStage(runtime, cat)
    svc = f"svc-{uuid.uuid4().hex[:6]}"
    for i, line in enumerate(LINES):
        cat(svc, line, "ERROR" if "declined" in line else "INFO", T0 + i)
    stage.after_batch([])
    await stage.hand_over()
    runtime.writers["templates"].flush(30)
    db = runtime.settings.clickhouse.database
    got = chdb_store.query(
        f"SELECT template, category, priority, count FROM {db}.templates FINAL "
        "WHERE service = {s:String} ORDER BY template", parameters={"s": svc}).result_rows
    assert [r[3] for r in got] == [20, 20, 20]
    assert ("payment <*> for order <*> declined by issuer", "unknown", "P2", 20) in got
