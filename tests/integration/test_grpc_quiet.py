"""etcdpy's client commands load grpc with its log lines off (GRPC_VERBOSITY=NONE) and leave the
environment as they found it; the user's own GRPC_VERBOSITY wins; ``etcdpy server`` and etcdpy imported
as a library change nothing.  Each case runs in a fresh interpreter (grpc reads the level once)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Records GRPC_VERBOSITY as grpc's module begins to run, imports the CLI as the program argv names it,
# then prints what grpc saw and what the environment holds afterwards ("-": unset / grpc not loaded).
_PROBE = """
import importlib.abc, importlib.machinery, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "grpc":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            seen.append(os.environ.get("GRPC_VERBOSITY", "-"))
            run(module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Watch())
sys.argv = sys.argv[1:]
import etcdpy.cli
print(seen[0] if seen else "-", os.environ.get("GRPC_VERBOSITY", "-"))
"""


def _seen(argv: list[str], verbosity: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    if verbosity is not None:
        env["GRPC_VERBOSITY"] = verbosity
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("argv", "verbosity", "expected"),
    [
        (["etcdpy", "get", "foo"], None, "NONE -"),
        (["/usr/local/bin/etcdpy", "--endpoints=https://127.0.0.1:2379", "put", "a", "b"], None, "NONE -"),
        (["etcdpy", "get", "foo"], "debug", "debug debug"),
        (["etcdpy", "server"], None, "- -"),
        (["my-program", "get"], None, "- -"),
    ],
    ids=["client command", "console script path", "the user's level", "server", "a library user"],
)
def test_grpc_sees_no_log_level_only_under_client_commands(
    argv: list[str], verbosity: str | None, expected: str
) -> None:
    assert _seen(argv, verbosity) == expected
