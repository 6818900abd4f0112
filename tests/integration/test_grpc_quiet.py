"""etcdpy's client commands load grpc with its log lines off (GRPC_VERBOSITY=NONE) and leave the
environment as they found it; the user's own GRPC_VERBOSITY wins; ``etcdpy server`` and etcdpy imported
as a library change nothing.  Each case runs in a fresh interpreter (grpc reads the level once)."""

from __future__ import annotations

import os

import pytest
from grpcprobe import NOT_LOADED, seen_by_grpc

# Imports the CLI as the program argv names it, then prints what the environment holds afterwards.
_IMPORT_CLI = """
import os, sys
sys.argv = sys.argv[1:]
import etcdpy.cli
print(os.environ.get("GRPC_VERBOSITY", "-"))
"""


def _seen(argv: list[str], verbosity: str | None = None) -> str:
    """GRPC_VERBOSITY as grpc saw it and as the environment holds it afterwards ("-": unset / not loaded)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    if verbosity is not None:
        env["GRPC_VERBOSITY"] = verbosity
    seen, after = seen_by_grpc("GRPC_VERBOSITY", _IMPORT_CLI, *argv, unset="-", env=env)
    return f"{'-' if seen == NOT_LOADED else seen} {after}"


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
