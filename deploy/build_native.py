"""``make native``: compile the per-event hot path (`schemas.native.MODULES`) with mypyc.

The same Python source becomes C extensions next to it: about 1.4x faster per event in the
ingest stage. Optional: when the build fails (no C compiler, no Python headers) the plain
modules run, with the same results. ``--if-stale`` builds only when a source is newer than
its extension; ``clean`` removes the extensions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

# By path, not `import schemas.native`: importing the package refuses stale builds.
_spec = importlib.util.spec_from_file_location(
    "logwarden_native", Path(__file__).resolve().parents[1] / "schemas" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)
BUILD = native.ROOT / ".cache" / "native"


def clean() -> None:
    for module in native.MODULES:
        for p in native.extensions(module):
            p.unlink()
    for p in native.ROOT.glob("*__mypyc*.so"):  # the shared runtime of the compiled modules
        p.unlink()


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    shutil.rmtree(BUILD, ignore_errors=True)
    os.chdir(native.ROOT)
    setup(name="logwarden-native", packages=[], py_modules=[],
          ext_modules=mypycify(list(native.MODULES), opt_level="3"),
          script_args=["-q", "build_ext", "--inplace", "--build-temp", str(BUILD / "temp"),
                       "--build-lib", str(BUILD / "lib")])


FAILED = BUILD.parent / "native-failed"  # a failed build is not retried until a source changes


def _newest_source() -> float:
    return max((native.ROOT / m).stat().st_mtime for m in native.MODULES)


def main(args: list[str]) -> int:
    if args == ["clean"]:
        clean()
        FAILED.unlink(missing_ok=True)
        return 0
    if args == ["--if-stale"]:
        if len(native.compiled()) == len(native.MODULES) and not native.stale():
            return 0
        if FAILED.exists() and FAILED.stat().st_mtime >= _newest_source():
            print("native build skipped: it failed before (`make native-clean` retries it)",
                  file=sys.stderr)
            return 0
    try:
        build()
    except (Exception, SystemExit) as exc:  # setuptools reports a failed compiler by exit
        clean()
        FAILED.parent.mkdir(parents=True, exist_ok=True)
        FAILED.write_text(f"{exc}\n")
        print(f"warning: the native build failed ({exc}); the plain Python modules run "
              "(same results, slower)", file=sys.stderr)
        return 0
    FAILED.unlink(missing_ok=True)
    print(f"compiled {len(native.compiled())} modules with mypyc", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
