"""Nothing read back from Kafka (or any data) is executed: no pickle, marshal, eval or exec.

Detector and template state, alert tables and dead letters travel through Kafka topics that
anyone allowed to write to the cluster can fill. Deserialising them with pickle (or
marshal, shelve, dill, jsonpickle, unsafe YAML, numpy's allow_pickle) would let that person
run code in the worker, so the production packages must not contain any of it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"][
    "build"]["targets"]["wheel"]["packages"]
CODE_LOADERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle",
                "jsonpickle", "joblib"}
BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"}


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def findings(path: Path, root: Path = ROOT) -> list[str]:
    """Every use of a code-running deserialiser in ``path``, as ``file:line: what``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    where = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            out += [f"{where}:{node.lineno}: import {n}" for n in names
                    if n.split(".")[0] in CODE_LOADERS]
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BUILTINS:
                out.append(f"{where}:{node.lineno}: {f.id}()")
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                    and f.value.id == "yaml" and f.attr in UNSAFE_YAML):
                safe = any(k.arg == "Loader" and "Safe" in ast.unparse(k.value)
                           for k in node.keywords)
                if not safe:
                    out.append(f"{where}:{node.lineno}: yaml.{f.attr} without SafeLoader")
            out += [f"{where}:{node.lineno}: allow_pickle=True" for k in node.keywords
                    if k.arg == "allow_pickle" and ast.unparse(k.value) != "False"]
        elif isinstance(node, ast.Attribute) and node.attr in ("loads", "load") and isinstance(
                node.value, ast.Name) and node.value.id in CODE_LOADERS:
            out.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return out


def test_the_scan_covers_the_packages_that_read_kafka() -> None:
    scanned = {p.relative_to(ROOT).parts[0] for p in sources()}
    assert {"streams", "detectors", "categorisation", "alerting", "sinks", "web",
            "sdk"} <= scanned


def test_no_pickle_marshal_or_eval_in_production_code() -> None:
    found = [f for p in sources() for f in findings(p)]
    assert found == [], "code-running deserialisers:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle\n", "from pickle import loads\n", "import marshal\n", "eval(x)\n",
    "exec(x)\n", "import yaml\nyaml.load(s)\n", "np.load(f, allow_pickle=True)\n",
    "import dill\n", "import cloudpickle as c\n",
])
def test_the_scan_finds_each_kind(tmp_path: Path, snippet: str) -> None:
    p = tmp_path / "probe.py"
    p.write_text(snippet)
    assert findings(p, tmp_path)


def test_the_scan_lets_safe_yaml_through(tmp_path: Path) -> None:
    p = tmp_path / "probe.py"
    p.write_text("import yaml\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
                 "model.eval_batch(x)\n")
    assert findings(p, tmp_path) == []
