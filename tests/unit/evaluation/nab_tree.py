"""A tiny NAB checkout (data, labels) and a results tree for the NAB evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path


def nab_tree(tmp_path: Path, files: list[str]) -> tuple[Path, Path]:
    """(NAB root, results root) holding an empty CSV per file and empty label lists."""
    root, results = tmp_path / "nab", tmp_path / "results"
    for rel in files:
        for base in (root / "data", results):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text("timestamp,value\n")
    (root / "labels").mkdir()
    for name in ("combined_windows.json", "combined_labels.json"):
        (root / "labels" / name).write_text(json.dumps({f: [] for f in files}))
    return root, results
