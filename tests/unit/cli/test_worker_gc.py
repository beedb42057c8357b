"""The worker's garbage-collector setting (``LOGWARDEN_STREAM_GC_THRESHOLD``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cli.run import tune_gc
from streams.settings import Settings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_setting_reaches_the_collector(restore_gc: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGWARDEN_STREAM_GC_THRESHOLD", "25000")
    tune_gc(Settings().stream.gc_threshold)
    assert gc.get_threshold() == (25000, 20, 20)
    assert gc.get_freeze_count() > 0  # start-up's objects left to the permanent generation


def test_zero_keeps_pythons_defaults(restore_gc: None) -> None:
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before
