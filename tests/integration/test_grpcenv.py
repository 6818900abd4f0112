"""``etcdpy server`` sets GRPC_EXPERIMENTS before grpc is imported, where grpc knows it; nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
from grpcprobe import NOT_LOADED, seen_by_grpc

import etcdpy
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


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != grpcenv.EXPERIMENTS_ENV}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env={**clean, **env}, capture_output=True, text=True, check=True
    )


def _seen_by_grpc(code: str, *args: str, **env: str) -> str:
    """GRPC_EXPERIMENTS as grpc's module saw it when it began to run ("" unset)."""
    clean = {k: v for k, v in os.environ.items() if k != grpcenv.EXPERIMENTS_ENV}
    seen, _ = seen_by_grpc(grpcenv.EXPERIMENTS_ENV, code, *args, env={**clean, **env})
    return "-" if seen == NOT_LOADED else seen


def test_importing_etcdpy_as_a_library_leaves_grpcs_settings_alone() -> None:
    for module in ("etcdpy", "etcdpy.client", "etcdpy.client.concurrency", "etcdpy.cli"):
        shown = f"import os, {module}, grpc; print(os.environ.get('GRPC_EXPERIMENTS', '-'))"
        assert _run(shown).stdout.strip() == "-", module
    # Even with ``server`` on a command line that is not etcdpy's.
    shown = "import os, etcdpy.cli, grpc; print(os.environ.get('GRPC_EXPERIMENTS', '-'))"
    assert _run(shown, "server").stdout.strip() == "-"


def test_etcdpy_server_sets_the_environment_before_grpc_loads() -> None:
    main = str(Path(etcdpy.__file__).with_name("__main__.py"))
    as_module = "import runpy; runpy.run_module('etcdpy', run_name='__main__', alter_sys=True)"
    assert _seen_by_grpc(as_module, "server", "--help") == LEGACY  # python -m etcdpy server
    script = "import sys; sys.argv[0] = '/usr/bin/etcdpy'; from etcdpy.cli import main; main()"
    assert _seen_by_grpc(script, "server", "--help") == LEGACY  # the console script
    assert _seen_by_grpc(script, "--debug", "server", "--help") == LEGACY
    server = "import runpy; runpy.run_module('etcdpy.server', run_name='__main__', alter_sys=True)"
    assert _seen_by_grpc(server, "--help") == LEGACY  # python -m etcdpy.server
    # The user's own choice wins; a client command sets nothing.
    assert _seen_by_grpc(script, "server", "--help", GRPC_EXPERIMENTS="event_engine_listener") == (
        "event_engine_listener"
    )
    assert _seen_by_grpc(script, "version") == ""
    assert grpcenv.runs_server([main, "server"]) and not grpcenv.runs_server(["-c", "server"])


def test_the_setting_is_made_only_while_grpc_is_not_loaded() -> None:
    shown = "from etcdpy import grpcenv; grpcenv.apply(); import os; print(os.getenv('GRPC_EXPERIMENTS', ''))"
    assert _run(shown).stdout.strip() == LEGACY
    assert _run(f"import grpc; {shown}").stdout.strip() == ""  # too late: it could not take effect


def test_a_server_under_the_setting_says_nothing_on_stderr() -> None:
    code = (
        "from etcdpy import grpcenv\n"
        "grpcenv.apply()\n"
        "import asyncio, grpc\n"
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
