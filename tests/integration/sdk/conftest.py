"""TEMPORARY: the lead's tests/conftest.py will provide ``kafka_bootstrap``; then delete me."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return "127.0.0.1:29092"
