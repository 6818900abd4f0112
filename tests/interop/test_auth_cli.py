"""Differential transcripts of the auth commands (auth_script.py): etcdctl and etcdpy's CLI, etcd and etcdpy.

The reference is etcdctl against a fresh etcd 3.4.  Against it, step by step
(stdout, ``Error:`` lines and exit code, ids and terms masked):

- etcdpy's CLI against a fresh etcd;
- etcdctl, and etcdpy's CLI, against a fresh etcdpy server, once that server
  serves the Auth service (skipped, saying so, while it does not).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from auth_script import AUTH_SCRIPT
from auth_support import enable_auth
from e2e.cli_tools import Running, run_tool, tool_argv, tool_env
from interop_runner import (
    Invoker,
    Result,
    ServerFacts,
    differences,
    etcdpy_in_process,
    run_cases,
    subprocess_invoker,
)
from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.api.errors import UnknownEtcdError
from etcdpy.client import Client

pytestmark = pytest.mark.interop


def _etcdctl() -> Invoker:
    if ETCDCTL_BIN is None:
        pytest.fail("the reference etcdctl is not installed: run ./scripts/test")
    return subprocess_invoker([ETCDCTL_BIN])


def _transcript(invoke: Invoker, server: ServerProcess) -> list[Result]:
    return run_cases(invoke, ServerFacts.probe(server.endpoint, server.peer_port), (AUTH_SCRIPT,))


def _assert_same(expected: list[Result], actual: list[Result], what: str) -> None:
    report = differences(expected, actual)
    assert not report, f"{len(report)} of {len(expected)} steps differ ({what}):\n" + "\n".join(report)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Result]]:
    """etcdctl against a fresh etcd: the transcript every other run must reproduce."""
    server = ServerProcess("etcd", tmp_path_factory.mktemp("reference") / "data").start()
    try:
        yield _transcript(_etcdctl(), server)
    finally:
        server.stop()


def test_script_covers_every_auth_command_and_format() -> None:
    argvs = [step.argv for step in AUTH_SCRIPT.steps]
    pairs = {(argv[i], argv[i + 1]) for argv in argvs for i in range(len(argv) - 1)}
    for group, commands in (
        ("auth", ("enable", "disable")),
        ("user", ("add", "delete", "get", "list", "passwd", "grant-role", "revoke-role")),
        ("role", ("add", "delete", "get", "list", "grant-permission", "revoke-permission")),
    ):
        for command in commands:
            assert (group, command) in pairs, (group, command)
    words = {word for argv in argvs for word in argv}
    for flag in ("--detail", "--no-password", "--new-user-password=bpw", "--interactive=false", "--prefix"):
        assert flag in words, flag
    for fmt in ("json", "fields", "protobuf", "table"):
        assert ("-w", fmt) in pairs, fmt


def test_reference_transcript_shows_auth_at_work(reference: list[Result]) -> None:
    """The script does what it says against etcd: grants hold, refusals refuse (a match means something)."""
    by_argv: dict[tuple[str, ...], Result] = {}
    for result in reference:
        by_argv.setdefault(result.argv, result)  # a command line's first run
    assert by_argv[("auth", "enable")].errors == "Error: etcdserver: root user does not exist"
    assert by_argv[("--user=alice:apw", "get", "foo1")].stdout == "foo1\nv\n"
    assert by_argv[("--user=alice:apw", "get", "b")].errors == "Error: etcdserver: permission denied"
    assert by_argv[("--user=root:rootpw", "user", "delete", "root")].code == 1
    assert by_argv[("--user=root:wrong", "user", "list")].code == 2
    assert by_argv[("--user=root", "user", "list")].stdout == "Password: \nroot\n"


def test_etcdpy_cli_against_etcd_matches_etcdctl(reference: list[Result], tmp_path: Path) -> None:
    server = ServerProcess("etcd", tmp_path / "data").start()
    try:
        actual = _transcript(etcdpy_in_process, server)
    finally:
        server.stop()
    _assert_same(reference, actual, "etcdpy's CLI vs etcdctl, both against etcd")


def _skip_without_auth_service(server: ServerProcess) -> None:
    with Client([server.endpoint]) as client:
        try:
            client.auth_status()
        except UnknownEtcdError as err:
            if err.status_code == grpc.StatusCode.UNIMPLEMENTED:
                pytest.skip(f"the etcdpy server does not serve the Auth service yet ({err.text})")
            raise


@pytest.mark.parametrize("tool", ["etcdctl", "etcdpy"])
def test_against_etcdpy_server_matches_etcd(reference: list[Result], tmp_path: Path, tool: str) -> None:
    server = ServerProcess("etcdpy", tmp_path / "data").start()
    try:
        _skip_without_auth_service(server)
        actual = _transcript(_etcdctl() if tool == "etcdctl" else etcdpy_in_process, server)
    finally:
        server.stop()
    _assert_same(reference, actual, f"{tool} against etcdpy vs etcdctl against etcd")


@pytest.fixture(params=["etcd", "etcdpy"])
def auth_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server with auth on: root, and alice with readwrite on app/ (auth_support)."""
    server = ServerProcess(request.param, tmp_path / "data").start()
    try:
        enable_auth(server.endpoint)
        yield server
    finally:
        server.stop()


ALICE_FLAG = "--user=alice:apw"


def test_lock_and_elect_run_with_user(auth_on: ServerProcess) -> None:
    ep = auth_on.endpoint
    held = run_tool("etcdpy", ep, ALICE_FLAG, "lock", "app/lock", "echo", "held")
    assert (held.returncode, held.stdout, held.stderr) == (0, "held\n", "")
    for tool in ("etcdctl", "etcdpy"):  # outside alice's prefix: refused, as etcdctl reports it
        refused = run_tool(tool, ep, ALICE_FLAG, "lock", "elsewhere", "true")
        assert refused.returncode == 1, (tool, refused.stderr)
        assert "Error: etcdserver: permission denied" in refused.stderr.splitlines(), (tool, refused.stderr)
    leader = Running("etcdpy", ep, ALICE_FLAG, "elect", "app/election", "candidate-1")
    try:
        name, value = leader.lines(2)
        assert re.fullmatch(r"app/election/[0-9a-f]+", name) and value == "candidate-1"
        for tool in ("etcdctl", "etcdpy"):
            listener = Running(tool, ep, ALICE_FLAG, "elect", "--listen", "app/election")
            try:
                assert listener.lines(2) == [name, value], (tool, listener.stderr())
            finally:
                listener.stop()
    finally:
        leader.stop()


def test_watch_and_lease_keep_alive_run_with_user(auth_on: ServerProcess) -> None:
    ep = auth_on.endpoint
    with Client(ep, user="alice", password="apw") as alice:
        first = alice.put("app/w1", "v1").header.revision
        watcher = Running("etcdpy", ep, ALICE_FLAG, "watch", "app/w", "--prefix", f"--rev={first}")
        try:
            assert watcher.lines(3) == ["PUT", "app/w1", "v1"]
            alice.put("app/w2", "v2")  # before or after the watch is open: --rev replays it either way
            assert watcher.lines(3) == ["PUT", "app/w2", "v2"]
        finally:
            watcher.stop()
        lease = alice.lease_grant(30).ID
        renewing = Running("etcdpy", ep, ALICE_FLAG, "lease", "keep-alive", f"{lease:x}")
        try:
            assert renewing.lines(1) == [f"lease {lease:016x} keepalived with TTL(30)"]
        finally:
            renewing.stop()
    denied = run_tool("etcdpy", ep, ALICE_FLAG, "watch", "elsewhere", "--rev=1")
    expected = run_tool("etcdctl", ep, ALICE_FLAG, "watch", "elsewhere", "--rev=1")
    assert (denied.returncode, denied.stdout) == (expected.returncode, expected.stdout) == (5, "")
    assert "permission denied" in denied.stderr and "permission denied" in expected.stderr


def _on_terminal(argv: list[str], answers: list[bytes], timeout: float = 30.0) -> tuple[bytes, int]:
    """Run ``argv`` with a pseudo-terminal as stdin and stdout, typing each answer after the next prompt.

    Returns what the terminal showed (echo included, if the program left it on) and the exit code.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, env=tool_env(), start_new_session=True
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    answered = 0  # how much of `shown` had been shown when the last answer was typed
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"{argv[0]} showed nothing more within {timeout}s: {shown!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the program ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown[answered:].rstrip(b"\r\n").endswith(b": "):  # a new prompt
                _wait_for_echo_off(master, deadline)  # as a person would, type once the prompt is ready
                os.write(master, pending.pop(0) + b"\n")
                answered = len(shown)
        return shown, proc.wait(timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for_echo_off(terminal: int, deadline: float) -> None:
    """Until the program has turned the terminal's echo off (no event says so: its mode is polled)."""
    while termios.tcgetattr(terminal)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the terminal's echo never went off"
        time.sleep(0.005)


def test_prompts_on_a_terminal_hide_the_password_as_etcdctl(auth_on: ServerProcess) -> None:
    """``user add`` and ``--user`` without a password ask on the terminal, echo off, in etcdctl's order."""
    shown = {}
    for tool, name in (("etcdctl", "typed1"), ("etcdpy", "typed2")):
        argv = tool_argv(tool, auth_on.endpoint, "--user=root", "user", "add", name)
        output, code = _on_terminal(argv, [b"secret-pw", b"secret-pw", b"rootpw"])
        assert code == 0, (tool, output)
        assert b"secret-pw" not in output and b"rootpw" not in output, f"{tool} echoed a password: {output!r}"
        shown[tool] = output.replace(name.encode(), b"<name>")
    assert shown["etcdpy"] == shown["etcdctl"]
    assert shown["etcdpy"] == (
        b"Password of <name>: \r\nType password of <name> again for confirmation: \r\nPassword: \r\n"
        b"User <name> created\r\n"
    )
    with Client(auth_on.endpoint, user="typed2", password="secret-pw") as typed:
        typed.authenticate()  # the password typed at the prompts is the one set


def test_auth_status_is_etcdctl_35s(server: ServerProcess) -> None:
    """``auth status`` (etcdctl 3.5's command; etcd 3.4 has no AuthStatus call) against the etcdpy server."""
    ep = server.endpoint
    off = run_tool("etcdpy", ep, "auth", "status")
    assert (off.returncode, off.stderr) == (0, "")
    assert re.fullmatch(r"Authentication Status: false\nAuthRevision: \d+\n", off.stdout)
    enable_auth(ep)
    on = run_tool("etcdpy", ep, "--user=root:rootpw", "auth", "status")
    revision = int(on.stdout.rsplit(" ", 1)[1])
    assert on.stdout == f"Authentication Status: true\nAuthRevision: {revision}\n"
    assert revision > int(off.stdout.rsplit(" ", 1)[1])  # users, roles and grants moved it on
    as_json = run_tool("etcdpy", ep, "--user=root:rootpw", "-w", "json", "auth", "status")
    assert f'"enabled":true,"authRevision":{revision}}}' in as_json.stdout
    fields = run_tool("etcdpy", ep, "--user=root:rootpw", "-w", "fields", "auth", "status")
    assert (fields.returncode, fields.stderr) == (4, "Error: fields not supported as output format\n")
    extra = run_tool("etcdpy", ep, "auth", "status", "x")
    refusal = "Error: auth status command does not accept any arguments\n"
    assert (extra.returncode, extra.stderr) == (128, refusal)
