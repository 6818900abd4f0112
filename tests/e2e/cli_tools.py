"""Running etcdpy's and etcdctl's CLIs as processes in the lock and elect tests, and reading lock queues."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

from procs import ETCDCTL_BIN

from etcdpy.client import Client

LOCK_KEY = re.compile(r"^(?P<name>.+)/(?P<lease>[0-9a-f]+)$")


def tool_argv(tool: str, endpoints: str, *args: str) -> list[str]:
    """The command line running etcdpy's CLI or the reference etcdctl against ``endpoints``."""
    if tool == "etcdctl":
        assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
        return [ETCDCTL_BIN, "--endpoints", endpoints, *args]
    return [sys.executable, "-m", "etcdpy", "--endpoints", endpoints, *args]


def tool_env() -> dict[str, str]:
    return {**os.environ, "ETCDCTL_API": "3"}


def run_tool(
    tool: str, endpoints: str, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tool_argv(tool, endpoints, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=tool_env(),
        check=False,
    )


class Running:
    """A CLI process in the background (its own session): its stdout lines as they come, signals, its end."""

    def __init__(self, tool: str, endpoints: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            tool_argv(tool, endpoints, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tool_env(),
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            self._stderr.extend(self.proc.stderr)

    def lines(self, count: int, timeout: float = 30.0) -> list[str]:
        """The next ``count`` lines printed; fails after ``timeout`` rather than hang."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"exited after {got}: {self.stderr()}"
            got.append(line)
        return got

    def rest(self) -> list[str]:
        """Every line not read yet (once the process has ended)."""
        return [line for line in iter(self._lines.get, None)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; a process still running after ``timeout`` fails the test with its threads' stacks.

        etcdpy's CLI prints every thread's stack on SIGQUIT (as etcdctl, a Go
        program, prints its goroutines) and dies of it.
        """
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(10)
            for reader in self._readers:
                reader.join(10)
            raise AssertionError(
                f"still running {timeout} s later; its stacks on SIGQUIT:\n{self.stderr()}"
            ) from None
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stderr(self) -> str:
        return "".join(self._stderr)

    def kill(self) -> None:
        """kill -9: no cleanup at all."""
        self.proc.kill()
        self.wait(10)

    def stop(self) -> None:
        """SIGTERM (a lock passes it to its command and releases), SIGKILL if that is not enough."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait(10)


def leases(client: Client) -> set[int]:
    return {lease.ID for lease in client.lease_leases().leases}


def queued(client: Client, name: str) -> int:
    return int(client.get(name + "/", prefix=True, count_only=True).count)


def lease_of(client: Client, name: str) -> int:
    """The lease of the lock's current holder (the key created first under the name)."""
    kvs = sorted(client.get(name + "/", prefix=True).kvs, key=lambda kv: kv.create_revision)
    return int(kvs[0].lease)
