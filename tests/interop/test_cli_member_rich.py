"""``member list`` on a terminal: a rich table marking the leader and learners; piped, etcdctl's bytes.

A terminal is faked with rich's TTY_COMPATIBLE=1, which `Output.is_terminal`
honours as rich does; the same check answers stdout's isatty() otherwise.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from procs import ETCDCTL_BIN, ServerProcess
from test_cli_support import TERMINAL, ids, invoke, plain_lines

pytestmark = pytest.mark.interop

LEARNER_URL = "http://127.0.0.1:1"


def etcdctl(endpoint: str, *args: str) -> bytes:
    """The reference etcdctl's stdout for `args` (the etcd_server fixture ensures it is installed)."""
    assert ETCDCTL_BIN is not None
    return subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={endpoint}", *args],
        capture_output=True,
        check=True,
        env={"ETCDCTL_API": "3"},
        timeout=30,
    ).stdout


@pytest.fixture
def with_learner(etcd_server: ServerProcess) -> Iterator[tuple[ServerProcess, int]]:
    """A one-member etcd plus an (unstarted) learner member; yields the server and the learner's ID."""
    added = invoke(
        f"--endpoints={etcd_server.endpoint}",
        "-w",
        "json",
        "member",
        "add",
        "learner1",
        f"--peer-urls={LEARNER_URL}",
        "--learner",
    )
    assert added.code == 0, added.stderr
    learner_id = int(json.loads(added.text)["member"]["ID"])
    yield etcd_server, learner_id


def test_member_list_on_a_terminal_marks_the_leader_and_the_learner(
    with_learner: tuple[ServerProcess, int],
) -> None:
    server, learner_id = with_learner
    _, member_id = ids(server.endpoint)
    run = invoke(f"--endpoints={server.endpoint}", "member", "list", env=TERMINAL)
    assert run.code == 0 and "\x1b[" in run.text
    lines = plain_lines(run.text)
    assert lines[0] == "members"
    assert lines[1].split() == ["ID", "name", "role", "status", "peer", "addrs", "client", "addrs"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows[f"{member_id:x}"] == [
        f"{member_id:x}",
        "default",
        "★",
        "leader",
        "started",
        server.peer_url,
        server.client_url,
    ]
    assert rows[f"{learner_id:x}"] == [f"{learner_id:x}", "learner", "unstarted", LEARNER_URL]
    assert len(rows) == 2


def test_member_list_piped_or_with_a_format_is_etcdctls(with_learner: tuple[ServerProcess, int]) -> None:
    server, _ = with_learner
    ep = f"--endpoints={server.endpoint}"
    assert invoke(ep, "member", "list").stdout == etcdctl(server.endpoint, "member", "list")
    assert invoke(ep, "member", "list", env={"TTY_COMPATIBLE": "0"}).stdout == etcdctl(
        server.endpoint, "member", "list"
    )
    for fmt in ("simple", "table"):
        expected = etcdctl(server.endpoint, "-w", fmt, "member", "list")
        assert invoke(ep, "-w", fmt, "member", "list", env=TERMINAL).stdout == expected
        assert invoke(ep, "member", "list", env={**TERMINAL, "ETCDCTL_WRITE_OUT": fmt}).stdout == expected
