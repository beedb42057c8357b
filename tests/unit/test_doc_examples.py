"""Every ``>>>`` example in the project's docstrings holds, run against the module as
imported: compiled by mypyc (`make native`) or not. A compiled module keeps no docstrings for
doctest to find, so the examples are read from its source file."""

from __future__ import annotations

import ast
import doctest
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["packages"]
WITH_EXAMPLES = sorted(
    p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ">>> " in p.read_text())


def examples(source: Path) -> list[tuple[str, str, int]]:
    """(name, docstring, line) of every docstring in a source file that holds an example."""
    out = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and ">>> " in doc:
                out.append((getattr(node, "name", source.stem), doc, getattr(node, "lineno", 1)))
    return out


def test_the_examples_are_found() -> None:
    assert len(WITH_EXAMPLES) >= 8  # this test would pass vacuously on an empty list


@pytest.mark.parametrize("source", WITH_EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docstring_examples_hold(source: Path) -> None:
    name = ".".join(source.relative_to(ROOT).with_suffix("").parts)
    module = importlib.import_module(name)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for where, doc, line in examples(source):
        test = parser.get_doctest(doc, dict(vars(module)), f"{name}.{where}", str(source), line)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
