"""Real server processes for tests: free loopback ports, temp data dirs, always killed.

`ServerProcess` starts either the reference etcd (``etcd``) or etcdpy
(``python -m etcdpy server``) with etcd's flag names, waits until the client port
answers, and kills the whole process group on `stop` (tests call it through the
fixtures in conftest.py, so nothing outlives the test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from etcdpy.chaos.cluster import free_port as chaos_free_port
from etcdpy.chaos.cluster import wait_group_gone

ETCD_BIN = shutil.which("etcd")
ETCDCTL_BIN = shutil.which("etcdctl")

# Channel options for a connection of the channel's own. grpc shares one subchannel per address among a
# process's channels; one left behind by a channel closed before a restart may have tried to connect in
# the restart's window and be in backoff, failing a new channel's first call at once with "Connection
# refused". The likely cause of one fresh-clone CI failure after a restart (not reproduced in 65 more).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


# Ports from below the kernel's ephemeral range: a port the kernel handed out for port 0 could be taken
# as the source port of some client's outgoing connection before the server binds it.
free_port = chaos_free_port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until 127.0.0.1:port accepts connections; fail early if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@dataclass
class ServerProcess:
    """One member process (etcd or etcdpy) on free loopback ports."""

    kind: str  # "etcd" or "etcdpy"
    data_dir: Path
    name: str = "default"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    cpus: str | None = None  # run on these CPUs only (taskset's list, "0" or "0,1"), children included

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        if self.kind == "etcd":
            if ETCD_BIN is None:
                raise RuntimeError("the reference etcd is not installed (apt-get install etcd-server)")
            base = [ETCD_BIN]
        else:
            base = [sys.executable, "-m", "etcdpy", "server"]
        if self.cpus is not None:
            base = ["taskset", "-c", self.cpus, *base]
        return [
            *base,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0, *, wait: bool = True) -> ServerProcess:
        """Launch the process; with `wait`, return once the client port answers (else call `wait_ready`)."""
        log_path = self.log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        self.log_path = log_path
        log = log_path.open("ab")
        env = dict(os.environ)
        env.pop("ETCDCTL_API", None)
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> ServerProcess:
        """Block until the process serves its client port (a cluster member: once it has a quorum)."""
        assert self.proc is not None
        try:
            wait_for_port(self.client_port, self.proc, timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.kind} failed to start; log:\n{self.read_log()}") from None
        return self

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (kill -9 by default) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            if sig == signal.SIGKILL:
                wait_group_gone(self.proc.pid)  # the splicer too: a restart must not meet its port

    def stop(self) -> None:
        self.kill(signal.SIGKILL)


def communicate_or_stacks(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """``proc.communicate(timeout)``; a CLI still running then fails the test with its threads' stacks.

    etcdpy's CLI prints every thread's stack on SIGQUIT (etcdctl, a Go program,
    its goroutines) and dies of it: the failure then says where it was stuck.
    """
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGQUIT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(
            f"{proc.args} still running {timeout} s later; printed {out!r}; stacks on SIGQUIT:\n{err}"
        ) from None


def without_zap_lines(text: str) -> str:
    """Output of the reference etcdctl without the JSON log lines (zap) its client library writes, such as
    a warning for each failed attempt of its retry interceptor; etcdpy writes none, and tests compare
    what is left."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith('{"level"'))
