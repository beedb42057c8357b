"""The guard against compiled modules (``make native``) older than their source."""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from schemas import native


def test_a_compiled_module_older_than_its_source_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "categorisation" / "masking.py"
    src.parent.mkdir()
    src.write_text("x = 1\n")
    monkeypatch.setattr(native, "ROOT", tmp_path)
    monkeypatch.setattr(native, "MODULES", ("categorisation/masking.py",))
    assert native.stale() == [] and native.compiled() == []  # no build: plain Python runs
    built = src.with_name("masking" + EXTENSION_SUFFIXES[0])
    built.write_bytes(b"")
    os.utime(src, (built.stat().st_mtime + 5,) * 2)  # the source was edited after the build
    assert native.stale() == ["categorisation/masking.py"]
    with pytest.raises(native.StaleNativeBuild, match="run `make native`"):
        native.check_fresh()
    os.utime(built, (src.stat().st_mtime + 5,) * 2)  # rebuilt
    native.check_fresh()
    assert native.compiled() == ["categorisation/masking.py"]
