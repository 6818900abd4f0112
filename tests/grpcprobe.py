"""What an environment variable held when grpc's module began to run, in a fresh interpreter.

grpc reads its settings (GRPC_VERBOSITY, GRPC_EXPERIMENTS) once, as its module runs: a test of who sets
them, and when, must look at that moment, not at the environment afterwards.  `seen_by_grpc` runs
``code`` behind an import hook that records the variable as grpc's module starts (looking grpc up, as
`importlib.metadata` does, does not count) and reports it at exit, whatever ``code`` does (click exits).
"""

from __future__ import annotations

import os
import subprocess
import sys

NOT_LOADED = "<grpc not loaded>"
_SAW = "grpc saw: "

_HOOK = """
import atexit, importlib.abc, importlib.machinery, os, sys
_seen = []
class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "grpc":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            _seen.append(os.environ.get(%(variable)r, %(unset)r))
            run(module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, _Watch())
atexit.register(lambda: print(%(saw)r + (_seen[0] if _seen else %(not_loaded)r), file=sys.stderr))
"""


def seen_by_grpc(
    variable: str, code: str, *args: str, unset: str = "", env: dict[str, str] | None = None
) -> tuple[str, str]:
    """(``variable`` as grpc saw it, ``unset`` if absent or `NOT_LOADED`; what ``code`` printed on stdout).

    ``code`` runs with ``args`` as its argv[1:], in the environment ``env`` (the test's own without
    ``variable`` by default).
    """
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != variable}
    hook = _HOOK % {"variable": variable, "unset": unset, "saw": _SAW, "not_loaded": NOT_LOADED}
    result = subprocess.run(
        [sys.executable, "-c", hook + code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    reported = [line for line in result.stderr.splitlines() if line.startswith(_SAW)]
    assert reported, f"the probe did not report (exit {result.returncode}): {result.stderr}"
    return reported[-1].removeprefix(_SAW), result.stdout.strip()
