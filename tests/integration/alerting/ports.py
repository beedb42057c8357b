"""Ports for the runbook and verdict tests: this suite's range on the shared machine."""

from __future__ import annotations

import socket

PORTS = range(17500, 17600)


def port_in_range() -> int:
    """A loopback port in 17500-17599 that nobody listens on right now."""
    for p in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port in 17500-17599")
