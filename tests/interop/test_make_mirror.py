"""make-mirror between etcd 3.4 and etcdpy, both ways, by etcdpy's CLI and by etcdctl.

Keys existing before the mirror starts and keys written, deleted and changed in transactions while it
runs must all arrive, renamed by the prefix rules; the destination then holds exactly the source's keys.
A marker key written last tells when the destination has caught up: the mirror applies the source's
revisions in order, so once the marker is there everything before it is too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
from procs import ETCDCTL_BIN, ServerProcess, communicate_or_stacks, free_port

from etcdpy.cli import cli
from etcdpy.cli.app import normalize_bool_flags
from etcdpy.client import Client
from etcdpy.client import requests as rq
from etcdpy.client.watch import watch_create_request

pytestmark = pytest.mark.interop

BASE_KEYS = 1200  # more than one page of the base sync (1000 keys)


def tool_argv(tool: str, endpoint: str, *args: str) -> list[str]:
    if tool == "etcdctl":
        assert ETCDCTL_BIN is not None
        return [ETCDCTL_BIN, "--endpoints", endpoint, *args]
    return [sys.executable, "-m", "etcdpy", "--endpoints", endpoint, *args]


def run(tool: str, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tool_argv(tool, endpoint, *args), capture_output=True, text=True, timeout=60)


def wait_for_key(client: Client, key: bytes, timeout: float = 60.0) -> None:
    """Return once ``key`` exists at the destination (a watch, not a poll)."""
    found = client.get(key)
    if found.kvs:
        return
    stream = client.watch(watch_create_request(key, start_revision=found.header.revision + 1))
    timer = threading.Timer(timeout, stream.close)
    timer.start()
    try:
        for response in stream:
            if any(event.kv.key == key for event in response.events):
                return
        raise AssertionError(f"{key!r} never arrived at the destination")
    finally:
        timer.cancel()
        stream.close()


def contents(client: Client, prefix: str) -> dict[bytes, bytes]:
    return {kv.key: kv.value for kv in client.get(prefix, prefix=True).kvs}


def servers(
    direction: str, etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> tuple[ServerProcess, ServerProcess]:
    return (etcd_server, etcdpy_server) if direction == "etcd->etcdpy" else (etcdpy_server, etcd_server)


@pytest.mark.parametrize("tool", ["etcdpy", "etcdctl"])
@pytest.mark.parametrize("direction", ["etcd->etcdpy", "etcdpy->etcd"])
def test_mirror_carries_existing_keys_and_every_change_made_while_it_runs(
    tool: str, direction: str, etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    source, dest = servers(direction, etcd_server, etcdpy_server)
    with Client([source.endpoint]) as src, Client([dest.endpoint]) as dst:
        for index in range(BASE_KEYS):
            src.put(f"app/{index:05d}", f"value {index}")
        src.put("elsewhere", "not under the prefix")
        mirror = subprocess.Popen(
            tool_argv(
                tool, source.endpoint, "make-mirror", "--prefix=app/", "--dest-prefix=copy/", dest.endpoint
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_for_key(dst, f"copy/{BASE_KEYS - 1:05d}".encode())
            src.put("app/00001", "changed")
            src.delete("app/00002")
            src.txn(
                success=[
                    rq.op_put(rq.put_request("app/txn-a", "a")),
                    rq.op_put(rq.put_request("app/txn-b", "b")),
                    rq.op_delete(rq.delete_request("app/00003")),
                ]
            )
            src.put("elsewhere", "still not mirrored")
            src.put("app/zz-marker", "last")
            wait_for_key(dst, b"copy/zz-marker")
            expected = {b"copy/" + key[len(b"app/") :]: value for key, value in contents(src, "app/").items()}
            assert contents(dst, "copy/") == expected
            assert dst.get("elsewhere").kvs == []
            assert dst.get("app/", prefix=True, count_only=True).count == 0
        finally:
            mirror.send_signal(signal.SIGINT)
            out, err = communicate_or_stacks(mirror)
    # etcdctl dies of the signal; etcdpy prints the keys it mirrored: the base, then 6 changes.
    if tool == "etcdctl":
        assert (mirror.returncode, out) == (-signal.SIGINT, "")
    else:
        assert (mirror.returncode, out, err) == (130, f"{BASE_KEYS + 6}\n", "")


@pytest.mark.parametrize("tool", ["etcdpy", "etcdctl"])
def test_no_dest_prefix_strips_the_prefix_and_sigterm_ends_the_mirror(
    tool: str, etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    with Client([etcd_server.endpoint]) as src, Client([etcdpy_server.endpoint]) as dst:
        src.put("app/a", "1")
        mirror = subprocess.Popen(
            tool_argv(
                tool,
                etcd_server.endpoint,
                "make-mirror",
                "--prefix=app/",
                "--no-dest-prefix",
                etcdpy_server.endpoint,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            src.put("app/b", "2")
            wait_for_key(dst, b"b")
            assert contents(dst, "") == {b"a": b"1", b"b": b"2"}
        finally:
            mirror.send_signal(signal.SIGTERM)
            out, _ = communicate_or_stacks(mirror)
    # SIGTERM as SIGINT: etcdctl dies of it, etcdpy prints what it mirrored and exits 128+15.
    assert (mirror.returncode, out) == ((-signal.SIGTERM, "") if tool == "etcdctl" else (143, "2\n"))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "make-mirror takes one destination argument"),
        (("a:1", "b:2"), "make-mirror takes one destination argument"),
        (
            ("--dest-prefix=x", "--no-dest-prefix", "127.0.0.1:1"),
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ),
        (("--dest-cacert=/no/such/ca.pem", "127.0.0.1:1"), "open /no/such/ca.pem: no such file or directory"),
    ],
)
def test_bad_arguments_as_etcdctl(etcd_server: ServerProcess, args: tuple[str, ...], error: str) -> None:
    for tool in ("etcdctl", "etcdpy"):
        result = run(tool, etcd_server.endpoint, "make-mirror", *args)
        assert (tool, result.returncode, result.stdout, result.stderr) == (tool, 128, "", f"Error: {error}\n")


def test_an_unreachable_destination_fails_instead_of_hanging(etcd_server: ServerProcess) -> None:
    # etcdctl 3.4 retries such a destination forever; etcdpy says so after the dial and command timeouts.
    result = run("etcdpy", etcd_server.endpoint, "--dial-timeout=1s", "--command-timeout=1s", "make-mirror",
                 f"127.0.0.1:{free_port()}")  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "Error: context deadline exceeded\n")


def test_go_style_false_turns_the_destinations_tls_on() -> None:
    argv = ["make-mirror", "--dest-insecure-transport=false", "127.0.0.1:1"]
    assert normalize_bool_flags(argv, cli) == ["make-mirror", "--no-dest-insecure-transport", "127.0.0.1:1"]
