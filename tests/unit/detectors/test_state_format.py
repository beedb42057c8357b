"""Detector state read back from Kafka is data in our own byte format, never code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_window_scoring import warm, win

from detectors.multivariate import ServiceModel
from detectors.scoring import WindowScorer
from detectors.scoring_bank import Banks, SeriesState
from detectors.settings import DetectionSettings

X = {"rate_per_s": 52.0, "error_rate": 0.02, "p95": 110.0, "p99": 160.0}


def trained(n: int = 250) -> ServiceModel:
    m = ServiceModel(seed=3)
    for i in range(n):
        m.update({"rate_per_s": 50.0 + i % 5, "error_rate": 0.01, "p95": 100.0 + i % 7,
                  "p99": 150.0})
    return m


@pytest.mark.parametrize("n", [0, 1, 59, 60, 61, 250])
def test_service_model_bytes_round_trip_continues_identically(n: int) -> None:
    a = trained(n)
    b = ServiceModel.from_bytes(a.to_bytes())
    assert b.to_bytes() == a.to_bytes()
    for i in range(100):
        x = {**X, "p95": 100.0 + 40 * (i % 9 == 0)}
        assert a.update(x) == b.update(x)


def test_service_model_snapshot_is_smaller_than_its_pickle() -> None:
    m = trained()
    assert len(m.to_bytes()) < 12_000 < len(pickle.dumps(m))


class _Boom:
    """A pickle payload that would create a file when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_pickled_service_model_in_kafka_state_is_refused_not_run(tmp_path: Path) -> None:
    sc = WindowScorer(DetectionSettings())
    warm(sc)
    st = sc.states["api"]
    assert st.mv is not None
    good = st.to_bytes()
    head = good[:len(good) - len(st.mv.to_bytes())]
    marker = tmp_path / "pwned"
    forged = head + pickle.dumps(_Boom(marker))
    with capture_logs() as logs:
        back = SeriesState.from_bytes(forged, Banks(sc.banks.cfg))
    assert not marker.exists()  # nothing in the bytes ran
    assert back.mv is None  # a fresh model is built on the next window
    assert back.rows.keys() == st.rows.keys()  # the univariate state is kept
    assert [e["event"] for e in logs] == ["service_model_refused"]
    assert "bad magic" in logs[0]["error"]


def test_state_with_service_model_restores_and_scores_identically() -> None:
    a, b = WindowScorer(DetectionSettings()), WindowScorer(DetectionSettings())
    warm(a)
    for series, raw in a.snapshot().items():
        b.restore(series, raw)
    assert b.states["api"].mv is not None
    assert b.states["api"].mv.to_bytes() == a.states["api"].mv.to_bytes()  # type: ignore[union-attr]
    for i in range(300, 330):
        w = win(i, p95=400.0 if i == 320 else 100.0)
        assert ([x.model_dump() for x in a.score_batch([w])]
                == [x.model_dump() for x in b.score_batch([w])])


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f{}",
                                 b"\x02\x00\x00\x00[]", b"\x0e\x00\x00\x00{\"m\":[1,2,3,4]}"])
def test_malformed_series_state_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        SeriesState.from_bytes(raw, WindowScorer(DetectionSettings()).banks)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:4] + b"\x02" + b[5:],  # unknown version
    lambda b: b[:-1],  # truncated
    lambda b: b + b"\x00",  # trailing bytes
    lambda b: b[:5] + (200).to_bytes(2, "little") + b[7:],  # too many trees
])
def test_service_model_snapshot_out_of_format_is_refused(mutate: Any) -> None:
    with pytest.raises(ValueError):
        ServiceModel.from_bytes(mutate(trained().to_bytes()))
