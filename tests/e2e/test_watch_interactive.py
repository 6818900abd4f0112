"""`watch -i` (simple and json, progress requests included) compared with etcdctl 3.4, byte for byte.

etcdctl against etcdpy's server and etcdpy's CLI against etcd must each print
exactly what etcdctl prints against etcd.  The session is driven line by
line and each line's output is awaited before the next is sent, so what a
progress request answers does not depend on timing.  Only cluster and member
ids and raft terms are masked.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.client import Client

pytestmark = pytest.mark.interop

ETCDPY_CLI = [sys.executable, "-m", "etcdpy"]
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Line:
    """A stdin line, or (``put``) a key=value written by a client, and what must appear once it is done."""

    text: str
    stdout_lines: int  # lines on stdout so far, per format: {"simple": n, "json": n}
    stdout_json_lines: int
    stderr_lines: int = 0
    put: bool = False
    watchers: int = 1  # watchers that answer: with two, their lines may interleave


SESSION = [
    Line("watch --rev 2 foo", 6, 1),
    Line("progress", 7, 3),
    Line("watch --rev 3 --prev-kv --prefix fo", 12, 4),
    Line("progress", 14, 8, watchers=2),
    Line("bogus", 14, 8, stderr_lines=1),
    Line("", 14, 8, stderr_lines=2),
    Line("watch", 14, 8, stderr_lines=3),
    Line("watch --prefix a b", 14, 8, stderr_lines=4),
    Line("fox=d", 17, 9, stderr_lines=4, put=True),
    Line("foo=c", 25, 11, stderr_lines=4, put=True, watchers=2),
]


class Session:
    """One `watch -i` process; its stdout and stderr collected as they come."""

    def __init__(self, tool: list[str], endpoint: str, fmt: str) -> None:
        self.proc = subprocess.Popen(
            [*tool, f"--endpoints={endpoint}", "watch", "-i", "-w", fmt],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        )
        self.out = bytearray()
        self.err = bytearray()
        self.grew = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _collect(self, pipe: object, into: bytearray) -> None:
        while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
            with self.grew:
                into += chunk
                self.grew.notify_all()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_lines(self, stdout: int, stderr: int) -> None:
        with self.grew:
            done = self.grew.wait_for(
                lambda: self.out.count(b"\n") >= stdout and self.err.count(b"\n") >= stderr, WAIT_SECONDS
            )
        assert done, f"waited for {stdout}/{stderr} lines; got:\n{self.out.decode()}\n{self.err.decode()}"

    def end(self) -> tuple[str, str, int]:
        """Close stdin (the session's EOF) and collect the rest."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(WAIT_SECONDS)
        for reader in self.readers:
            reader.join(WAIT_SECONDS)
        return self.out.decode(), self.err.decode(), code

    def close(self) -> None:
        """Kill the process (if it still runs) and release its pipes."""
        self.proc.kill()
        self.proc.wait()
        for reader in self.readers:
            reader.join(WAIT_SECONDS)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _mask(text: str) -> str:
    return re.sub(r'"(cluster_id|member_id|raft_term)":\d+', r'"\1":<N>', text)


def transcript(tool: list[str], kind: str, fmt: str, root: Path) -> list[list[str]]:
    """The session against a fresh server: one group of lines per step, then the rest, stderr, exit code."""
    server = ServerProcess(kind, root / f"{kind}.data").start()
    session: Session | None = None
    try:
        with Client([server.endpoint]) as client:
            for key, value in (("foo", "a"), ("foo", "b"), ("bar", "c")):
                client.put(key, value)
            session = Session(tool, server.endpoint, fmt)
            groups: list[list[str]] = []
            seen = 0
            for line in SESSION:
                if line.put:
                    key, value = line.text.split("=")
                    client.put(key, value)
                else:
                    session.send(line.text)
                stdout = line.stdout_lines if fmt == "simple" else line.stdout_json_lines
                session.wait_lines(stdout, line.stderr_lines)
                step = _mask(session.out.decode()).splitlines()[seen:stdout]
                groups.append(sorted(step) if line.watchers > 1 else step)
                seen = stdout
            out, err, code = session.end()
    finally:
        if session is not None:
            session.close()
        server.stop()
    return [*groups, _mask(out).splitlines()[seen:], err.splitlines(), [f"exit {code}"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[str]]]:
    """etcdctl against etcd, per format."""
    if ETCDCTL_BIN is None:
        pytest.fail("the reference etcdctl is not installed: run ./scripts/test")
    return {
        fmt: transcript([ETCDCTL_BIN], "etcd", fmt, tmp_path_factory.mktemp(f"ref-{fmt}"))
        for fmt in ("simple", "json")
    }


@pytest.mark.parametrize("fmt", ["simple", "json"])
# etcdpy's CLI against etcdpy's server is the two checked halves together: left out to keep the suite short.
@pytest.mark.parametrize(("cli", "kind"), [("etcdctl", "etcdpy"), ("etcdpy", "etcd")])
def test_interactive_watch_and_progress_print_what_etcdctl_prints_against_etcd(
    reference: dict[str, list[list[str]]], cli: str, kind: str, fmt: str, tmp_path: Path
) -> None:
    assert ETCDCTL_BIN is not None
    tool = [ETCDCTL_BIN] if cli == "etcdctl" else ETCDPY_CLI
    expected = reference[fmt]
    assert "progress notify: 4" in expected[1]  # the reference answered the progress request
    assert transcript(tool, kind, fmt, tmp_path) == expected
