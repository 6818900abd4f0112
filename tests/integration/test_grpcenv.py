"""etcdpy sets GRPC_EXPERIMENTS for grpc before grpc is imported, and only where grpc knows the experiment."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc

from etcdpy import grpcenv

LEGACY = "-event_engine_listener"


def test_adds_the_legacy_listener_for_known_releases() -> None:
    assert grpcenv.experiments("", (1, 85)) == LEGACY
    assert grpcenv.experiments("", (1, 60)) == LEGACY
    assert grpcenv.experiments("promise_based_client_call", (1, 85)) == f"promise_based_client_call,{LEGACY}"


def test_leaves_unknown_releases_and_the_users_own_choice_alone() -> None:
    assert grpcenv.experiments("", None) == ""
    assert grpcenv.experiments("", (1, 59)) == ""
    assert grpcenv.experiments("", (2, 0)) == ""
    assert grpcenv.experiments("event_engine_listener", (1, 85)) == "event_engine_listener"


def test_reads_the_installed_release_without_importing_grpc() -> None:
    major, minor = (int(part) for part in grpc.__version__.split(".")[:2])
    assert grpcenv.grpc_release() == (major, minor)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != grpcenv.EXPERIMENTS_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    )


def test_importing_etcdpy_sets_the_environment_before_grpc_loads() -> None:
    shown = "import os, etcdpy, grpc; print(os.environ.get('GRPC_EXPERIMENTS', ''))"
    assert _run(shown).stdout.strip() == LEGACY
    assert _run(shown, GRPC_EXPERIMENTS="event_engine_listener").stdout.strip() == "event_engine_listener"
    # grpc already loaded: the setting could no longer take effect, so none is made.
    late = "import os, grpc, etcdpy; print(os.environ.get('GRPC_EXPERIMENTS', ''))"
    assert _run(late).stdout.strip() == ""


def test_a_server_under_the_setting_says_nothing_on_stderr() -> None:
    code = (
        "import asyncio, etcdpy, grpc\n"
        "async def main():\n"
        "    server = grpc.aio.server()\n"
        "    server.add_insecure_port('127.0.0.1:0')\n"
        "    await server.start()\n"
        "    await server.stop(None)\n"
        "asyncio.run(main())\n"
    )
    assert _run(code).stderr == ""
    # The check can fail: an experiment grpc does not know is reported on stderr.
    assert "Unknown experiment" in _run(code, GRPC_EXPERIMENTS="-no_such_experiment").stderr
