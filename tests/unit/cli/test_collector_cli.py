"""`logwarden collector`: its help, and the refusal to start an open receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOGWARDEN_")}
    return subprocess.run([sys.executable, "-m", "cli.main", "collector", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_help_names_the_paths_and_the_token() -> None:
    out = run("--help")
    assert out.returncode == 0
    assert "/v1/logs" in out.stdout and "LOGWARDEN_OTLP_TOKEN" in out.stdout


def test_refuses_to_start_without_a_token() -> None:
    out = run("--port", "17090")
    assert out.returncode == 1
    assert "error: the OTLP receiver needs a token: set LOGWARDEN_OTLP_TOKEN" in out.stderr
