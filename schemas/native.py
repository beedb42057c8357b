"""The modules compiled with mypyc by ``make native``, and a guard against stale builds.

Python imports an extension module (``masking.cpython-311-….so``) before the source file
of the same name, so an edit to a compiled module's source would silently not run. Importing
any logwarden package checks that no compiled module is older than its source, and refuses
to start with the command that fixes it. Without a build (no C compiler, or
``make native-clean``) the plain Python modules run, with the same results.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The per-event hot path: pure, typed code with no pydantic models (pydantic introspects
# Python functions, which a compiled module does not have; the models are in
# categorisation/config.py).
MODULES = (
    "schemas/fastpath.py",
    "schemas/auth_events.py",
    "streams/windows.py",
    "categorisation/masking.py",
    "categorisation/miner.py",
    "categorisation/rates.py",
    "categorisation/registry.py",
    "categorisation/triage.py",
    "streams/cardinality.py",
    "streams/ingest.py",
    "streams/categorise.py",
    "sinks/clickhouse/rows.py",
    "privacy/rules.py",
    "privacy/redact.py",
)


class StaleNativeBuild(ImportError):
    """A compiled module is older than its source."""


def extensions(module: str) -> list[Path]:
    """The compiled files of one module (``categorisation/masking.py``) that exist."""
    src = ROOT / module
    return [p for suffix in EXTENSION_SUFFIXES
            if (p := src.with_name(src.stem + suffix)).exists()]


def stale() -> list[str]:
    """The compiled modules whose source changed since they were built."""
    out = []
    for module in MODULES:
        built = extensions(module)
        if built and min(p.stat().st_mtime for p in built) < (ROOT / module).stat().st_mtime:
            out.append(module)
    return out


def compiled() -> list[str]:
    """The modules that run compiled in this checkout."""
    return [m for m in MODULES if extensions(m)]


def check_fresh() -> None:
    """Raise `StaleNativeBuild` if a compiled module is older than its source."""
    old = stale()
    if old:
        raise StaleNativeBuild(
            f"compiled modules are older than their source: {', '.join(old)}; run "
            "`make native` to rebuild them (or `make native-clean` to run the plain Python)")
