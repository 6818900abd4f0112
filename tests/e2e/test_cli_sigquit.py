"""SIGQUIT to a CLI command that waits: every thread's stack on stderr, then death by the signal, as Go's.

etcdctl (a Go program) prints its goroutines and exits when it gets SIGQUIT; etcdpy's CLI prints every
Python thread's stack (faulthandler) and dies of the signal: the way to see where a command that does
not end is waiting (the lock and elect tests ask for it when a command outlives its timeout).
"""

from __future__ import annotations

import signal

from cli_tools import Running
from procs import ServerProcess

from etcdpy.client import Client


def test_sigquit_prints_the_stacks_of_a_waiting_watch_and_kills_it(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    watcher = Running("etcdpy", shared_server.endpoint, "watch", name, "--rev", "1")
    running.append(watcher)
    shared_client.put(name, "v")
    assert watcher.lines(3) == ["PUT", name, "v"]  # the command runs, and waits for more
    watcher.signal(signal.SIGQUIT)
    assert watcher.proc.wait(30) == -signal.SIGQUIT
    watcher.wait()
    stacks = watcher.stderr()
    assert "Current thread" in stacks, stacks
    assert "etcdpy/cli/" in stacks and "in watch" in stacks, stacks
