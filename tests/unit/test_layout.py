"""The layout's promises: no import cycle between modules, and packages that import one way.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a cycle worked
around by a late import is still a cycle for the reader.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"][
    "packages"]
# What each package may import (besides itself). Production code never imports the
# developer-only packages (cli, demo, bench, evaluation, devstack).
ALLOWED = {
    "schemas": set(),
    "sinks": {"schemas"},
    "categorisation": {"schemas"},
    "detectors": {"schemas"},
    "alerting": {"schemas", "sinks"},
    "incidents": {"schemas"},
    "sdk": {"schemas"},
    "otlp": {"schemas"},
    "privacy": {"schemas", "alerting"},  # alerting.yamlfile: YAML errors with file:line
    "audit": {"schemas", "sinks"},
    "web": {"schemas", "sinks", "alerting", "otlp", "audit", "incidents"},
    "streams": {"schemas", "sinks", "categorisation", "detectors", "alerting", "web", "otlp",
                "privacy", "audit", "incidents"},
    "demo": {"schemas", "sdk"},
    "evaluation": {"schemas", "categorisation", "detectors", "streams", "demo", "alerting",
                   "incidents"},
    "devstack": {"schemas", "streams"},
    "bench": {"schemas", "sinks", "categorisation", "detectors", "streams", "devstack", "sdk",
              "alerting", "privacy"},
    "cli": set(PACKAGES),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (a ``from pkg import mod`` names the module)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    return {name: imports(path, name, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    g = graph()
    # a package's __init__ that re-exports its modules is not a cycle with them
    g = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}
    assert cycles(g) == []


def test_packages_import_one_way() -> None:
    wrong = defaultdict(set)
    for mod, deps in graph().items():
        pkg = mod.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                wrong[f"{pkg} -> {other}"].add(f"{mod} imports {dep}")
    assert dict(wrong) == {}


def test_every_package_has_a_rule() -> None:
    assert set(PACKAGES) == set(ALLOWED)


def test_the_package_rules_themselves_are_one_way() -> None:
    assert cycles({p: deps - {p} for p, deps in ALLOWED.items()}) == []
