"""`free_port` hands a port out once per machine while the process it went to lives (`claim_port`).

Two pytest workers restarting members on their own ports must never be given each other's: a port whose
member is down for a restart looks free to a bind test, so the claim is a lock on the port's byte of a
shared file, which the kernel drops when the claiming process ends.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from etcdpy.chaos import cluster

HOLDER = """
import sys
from etcdpy.chaos.cluster import claim_port
print(claim_port(int(sys.argv[1])), flush=True)
sys.stdin.read()  # hold the claim until the test closes our stdin
"""


def hold(port: int) -> subprocess.Popen[str]:
    """Another process that claims ``port`` and holds it until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    answer = holder.stdout.readline()
    if answer != "True\n":
        holder.kill()
        holder.communicate()  # its pipes closed here, not left to the collector
        raise AssertionError(f"the holder could not claim port {port}: {answer!r}")
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    holder.communicate(timeout=30)  # closes its stdin (the end of its claim) and its stdout
    assert holder.returncode == 0


def unclaimed_port() -> int:
    """A port of free_port's range that no process claims at this moment (the other pytest workers hold
    claims on every port they handed out): claimed here to be sure, then let go at once."""
    while True:
        port = cluster._ports.randrange(max(cluster._EPHEMERAL_START - 12000, 1024), cluster._EPHEMERAL_START)
        if port not in cluster._taken and cluster.claim_port(port):
            cluster.release_port(port)
            return port


def test_a_port_claimed_by_a_live_process_is_refused_until_it_ends() -> None:
    port = unclaimed_port()
    holder = hold(port)
    try:
        assert not cluster.claim_port(port)
    finally:
        release(holder)
    assert cluster.claim_port(port)  # the kernel dropped the holder's lock with the holder
    cluster._taken.add(port)  # this process holds it now: never hand it out here either


def test_free_port_skips_a_port_another_process_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    held, other = unclaimed_port(), unclaimed_port()
    assert held != other
    holder = hold(held)
    try:
        picks = iter([held, other])
        monkeypatch.setattr(cluster._ports, "randrange", lambda start, stop: next(picks))
        assert cluster.free_port() == other  # `held` binds (nothing listens on it) but is claimed
    finally:
        release(holder)
