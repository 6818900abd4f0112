"""SIGINT at any moment of elect -l, elect, lock, watch and lease keep-alive: etcdctl's end, never a hang.

Python runs a signal handler in the main thread between two bytecodes, so a
handler that raises can cut into grpc's or threading's code anywhere (grpc
even turns an exception while it decodes a message into an INTERNAL error of
the call).  Each test sweeps the moment: a child process (a hang must not hang
the test, and the handlers need a main thread of their own) runs the command
in-process once per point N, and sends itself SIGINT at the N-th line the
command's code executes (in the main thread and in the CLI's worker thread)
after a trigger; point `BLOCKED` is never reached, its signal comes `LATE`,
while the command waits.

- observer (``elect -l``): the trigger is its first printed leader, whose key
  the child then deletes (the observer reads the successor, if any, prints it
  and opens a new watch); every run must exit 0, no "observer lost";
- waiter (``lock``, ``elect`` as candidate) behind a holder: the trigger is the
  creation of its session; every run must fail with etcdctl's "context
  canceled" and leave nothing queued;
- ``watch`` (plain, ``--prev-kv``, ``-- cmd``, ``-i``, and failing over from
  a dead endpoint) and ``lease keep-alive`` (and ``--once``): the trigger is
  the opening of the stream (the renewal), which delivers an event (a
  renewal) at once; every run must end as etcdctl, which dies of the signal,
  ends for a shell: status 130 (the old code hung at exit, or ended with
  click's "interrupted").

Run as a script (``python test_cli_interrupt.py ENDPOINT DEAD SCENARIO TARGET N...``, DEAD an
address nothing listens on),
this file is the child: it prints one JSON report per point on stderr.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

LATE = 1.0  # seconds after the trigger: the signal goes anyway (the point was past the work)
BLOCKED = 10**9  # a point never reached: the signal comes LATE, while the command waits
REPORT = "REPORT "
KILLED = "SystemExit: 130"  # how the child sees a command end as one SIGINT killed (etcdctl's end)
# The lines the command's code runs from the trigger to the wait (to the end of --once's work),
# each swept in some 20 points.
SWEPT_LINES = {
    "watch": 1050,
    "watch-prev-kv": 1050,
    "watch-exec": 2000,  # the command runs for the first event
    "watch-interactive": 1050,
    "failover": 1750,
    "keep-alive": 1150,
    "keep-alive-once": 800,
}
WATCHES = {  # scenario: the watch command's arguments after the key (with --rev at the put)
    "watch": ["--prefix"],
    "watch-prev-kv": ["--prefix", "--prev-kv"],
    "watch-exec": ["--prefix", "--", "true"],
}
FIRING = "FIRING "


# -- the child


class _Clock:
    """Counts the lines the observer executes after the trigger; sends SIGINT at the ``point``-th."""

    def __init__(self, point: int, target: str, trigger_code: Any, on_trigger: Any, worker_name: str) -> None:
        self.point = point
        self.target = target  # count the lines of functions of this name only; "*": every line
        self.trigger_code = trigger_code
        self.on_trigger = on_trigger
        self.worker_name = worker_name
        self.armed = False
        self.fired = threading.Event()
        self.where = ""
        self._lines = itertools.count(1)  # next() is atomic: the main thread and the worker may both count
        self.counted = 0  # the lines counted so far (about: two threads may count at once)
        self.failover_at: int | None = None  # the lines counted when a watch began to fail over
        self._timer: threading.Timer | None = None

    def trace(self, frame: FrameType, event: str, arg: object) -> Any:
        thread = threading.current_thread()
        if thread is not threading.main_thread() and thread.name != self.worker_name:
            return None  # grpc's own threads: not the observer's code
        if not self.armed:
            if event == "call" and frame.f_code is self.trigger_code:
                self.armed = True
                self.on_trigger()
                self._timer = threading.Timer(LATE, self.fire, ("late",))
                self._timer.start()
            return self.trace
        if event == "call" and frame.f_code.co_name == "_fail_over" and self.failover_at is None:
            self.failover_at = self.counted
        if event == "line" and self.target in ("*", frame.f_code.co_name) and not self.fired.is_set():
            self.counted = next(self._lines)
            if self.counted >= self.point:
                where = frame.f_code.co_filename.replace(sys.prefix, "<python>")
                self.fire(f"{where}:{frame.f_lineno} {frame.f_code.co_name} ({thread.name})")
                return None
        return self.trace

    def fire(self, where: str) -> None:
        if self.fired.is_set():
            return
        self.fired.set()
        self.where = where
        print(FIRING + json.dumps({"point": self.point, "where": where}), file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _child(endpoint: str, dead: str, scenario: str, target: str, points: list[int]) -> None:
    import click

    from etcdpy.cli import elect
    from etcdpy.cli.app import cli
    from etcdpy.cli.signals import WORKER_NAME
    from etcdpy.client import Client
    from etcdpy.client.concurrency import Election, Mutex, Session
    from etcdpy.client.lease import KeepAlive
    from etcdpy.client.watch import Watch

    with Client(endpoint) as writer:
        for point in points:
            name = f"interrupted-{scenario}-{os.getpid()}-{point}"
            prefix = name.encode() + b"/"
            holder: Session | None = None
            stdin: int | None = None  # the write end of the command's stdin, if it reads one
            endpoints = endpoint
            if scenario.startswith("watch") or scenario == "failover":
                # The stream opens from the revision of a put: its first response is an event.
                rev = writer.put(prefix + b"a", b"first").header.revision
                argv = ["watch", "--rev", str(rev), name, *WATCHES.get(scenario, ["--prefix"])]
                if scenario == "watch-interactive":
                    argv = ["watch", "-i"]
                    read, stdin = os.pipe()
                    os.write(stdin, f"watch --prefix --rev {rev} {name}\n".encode())
                    sys.stdin = open(read)  # noqa: SIM115 - closed after the run
                if scenario == "failover":  # the stream breaks on the dead endpoint first
                    endpoints = f"{dead},{endpoint}"
                trigger, on_trigger = Watch.__init__.__code__, lambda: None
            elif scenario.startswith("keep-alive"):
                lease = writer.lease_grant(30).ID
                argv = ["lease", "keep-alive", f"{lease:x}"]
                trigger = KeepAlive.__init__.__code__
                if scenario == "keep-alive-once":
                    argv.append("--once")
                    trigger = Client.lease_keep_alive_once.__code__
                on_trigger = lambda: None  # noqa: E731
            elif scenario in ("lock", "campaign"):
                # Someone holds the lock (leads): the command queues behind and waits.
                holder = Session(writer, ttl=30)
                if scenario == "lock":
                    Mutex(holder, name).lock()
                    argv = ["lock", name]
                else:
                    Election(holder, name).campaign(b"holder")
                    argv = ["elect", name, "waiting"]
                trigger, on_trigger = Session.__init__.__code__, lambda: None
            else:
                writer.put(prefix + b"a", b"first")
                if scenario == "successor":
                    writer.put(prefix + b"b", b"second")
                argv = ["elect", "-l", name]
                trigger = elect._as_etcd_observer_shows.__code__
                on_trigger = lambda p=prefix: writer.delete(p + b"a")  # noqa: E731
            clock = _Clock(point, target, trigger, on_trigger, WORKER_NAME)
            sys.settrace(clock.trace)
            threading.settrace(clock.trace)
            try:
                cli.main(["--endpoints", endpoints, *argv], standalone_mode=False)
                outcome = "exit 0"
            except click.ClickException as err:
                outcome = f"exit {err.exit_code}: {err.format_message()}"
            except BaseException as err:  # reported to the test, which fails on it
                outcome = f"{type(err).__name__}: {err}"
            finally:
                sys.settrace(None)
                threading.settrace(None)
                clock.stop()
                if stdin is not None:
                    os.close(stdin)
                    sys.stdin.close()
            queued = writer.get(prefix, prefix=True, count_only=True).count
            if holder is not None:
                holder.close()
            report = {
                "point": point,
                "outcome": outcome,
                "fired": clock.fired.is_set(),
                "where": clock.where,
                "queued": queued,
                "failover_at": clock.failover_at,
            }
            print(REPORT + json.dumps(report), file=sys.stderr, flush=True)


# -- the tests


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from procs import ServerProcess

    proc = ServerProcess("etcdpy", tmp_path_factory.mktemp("etcdpy") / "data").start()
    yield proc.endpoint
    proc.stop()


def _run_child(endpoint: str, scenario: str, target: str, points: list[int]) -> list[dict[str, Any]]:
    """The child's reports, one per point; fails naming the point if the child hangs or dies."""
    from procs import free_port

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: a stream opened on it breaks at once
    child = subprocess.Popen(
        [sys.executable, __file__, endpoint, dead, scenario, target, *map(str, points)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    reports: list[dict[str, Any]] = []
    firing = "none yet"
    other: list[str] = []
    try:
        while len(reports) < len(points):
            try:
                line = lines.get(timeout=LATE + 20)
            except queue.Empty:
                pytest.fail(f"the command hung after SIGINT at {firing}")
            assert line is not None, f"the child died after SIGINT at {firing}: {other[-20:]}"
            if line.startswith(FIRING):
                firing = line[len(FIRING) :]
            elif line.startswith(REPORT):
                reports.append(json.loads(line[len(REPORT) :]))
            else:
                other.append(line)
    finally:
        child.kill()
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    return reports


@pytest.mark.parametrize("scenario", ["successor", "no-successor"])
def test_sigint_at_any_moment_of_a_leader_change_ends_the_observer_with_exit_0(
    endpoint: str, scenario: str
) -> None:
    points = [*range(1, 1500, 37), BLOCKED]
    reports = _run_child(endpoint, scenario, "*", points)
    assert [r["point"] for r in reports] == points
    failed = [r for r in reports if r["outcome"] != "exit 0" or not r["fired"]]
    assert failed == [], "interrupted observers must exit 0"
    # The sweep is only worth something if the signals landed all over the observer's work,
    # inside grpc's opening of the successor's watch included.
    places = {r["where"] for r in reports}
    assert len(places) > len(points) // 2
    assert any("etcdpy/client/watch.py" in where for where in places)
    assert any("/grpc/" in where for where in places)
    assert reports[-1]["where"] == "late"


def test_sigint_while_grpc_converts_a_message_is_not_taken_for_a_lost_observation(endpoint: str) -> None:
    """grpc turns any exception while it (de)serializes a message into an INTERNAL error of the call.

    The observer reads the successor at the deletion's revision (a unary call,
    whose response grpc decodes in the calling thread); `Interrupted` raised
    there used to come back as that error, reported as "elect: observer lost".
    """
    points = list(range(1, 13))
    reports = _run_child(endpoint, "successor", "_transform", points)
    failed = [r for r in reports if r["outcome"] != "exit 0"]
    assert failed == [], "interrupted observers must exit 0"
    assert all(" _transform " in r["where"] for r in reports), "the signals were sent from grpc's converter"


@pytest.mark.parametrize("command", ["lock", "campaign"])
def test_sigint_at_any_moment_of_a_wait_for_a_lock_or_leadership_is_context_canceled(
    endpoint: str, command: str
) -> None:
    """From the session's creation to the wait behind the holder: etcdctl's error, nothing left queued."""
    points = [*range(1, 3400, 97), BLOCKED]  # the wait begins some 3200 lines after the trigger
    reports = _run_child(endpoint, command, "*", points)
    failed = [r for r in reports if (r["outcome"], r["queued"]) != ("exit 1: context canceled", 1)]
    assert failed == [], "an interrupted waiter says context canceled and leaves the queue"
    # Signals sent all over the work (a sweep that counted no line would send them all late).
    places = {r["where"] for r in reports}
    assert len(places) > len(points) // 2
    assert any("/grpc/" in where for where in places)
    assert reports[-1]["where"] == "late"


def _sweep(scenario: str) -> list[int]:
    return list(range(1, SWEPT_LINES[scenario], SWEPT_LINES[scenario] // 20))


@pytest.mark.parametrize("scenario", [*WATCHES, "watch-interactive", "failover"])
def test_sigint_at_any_moment_of_a_watch_ends_it_with_status_130(endpoint: str, scenario: str) -> None:
    """From the stream's opening (and its failover) to the wait for events: status 130, as etcdctl."""
    points = [*_sweep(scenario), BLOCKED]
    reports = _run_child(endpoint, scenario, "*", points)
    failed = [r for r in reports if r["outcome"] != KILLED or not r["fired"]]
    assert failed == [], "an interrupted watch ends with status 130"
    places = {r["where"] for r in reports}
    assert len(places) > len(points) // 2
    assert any("/grpc/" in where for where in places)
    if scenario == "failover":  # some signal came after the failover began, before the wait
        assert any(
            r["failover_at"] is not None and r["failover_at"] < r["point"] < BLOCKED for r in reports
        ), "no signal while the stream failed over"
    assert reports[-1]["where"] == "late"


def test_sigint_at_any_moment_of_lease_keep_alive_ends_it_with_status_130(endpoint: str) -> None:
    points = [*_sweep("keep-alive"), BLOCKED]
    reports = _run_child(endpoint, "keep-alive", "*", points)
    failed = [r for r in reports if r["outcome"] != KILLED or not r["fired"]]
    assert failed == [], "an interrupted keep-alive ends with status 130"
    places = {r["where"] for r in reports}
    assert len(places) > len(points) // 2
    assert any("/grpc/" in where for where in places)
    assert reports[-1]["where"] == "late"


def test_sigint_at_any_moment_of_lease_keep_alive_once_ends_it_with_status_130(endpoint: str) -> None:
    """A signal during the one renewal (and its printing): status 130."""
    points = _sweep("keep-alive-once")
    reports = _run_child(endpoint, "keep-alive-once", "*", points)
    failed = [r for r in reports if r["outcome"] != KILLED or not r["fired"]]
    assert failed == [], "an interrupted renewal ends with status 130"
    places = {r["where"] for r in reports}
    assert len(places) > len(points) // 2
    assert any("/grpc/" in where for where in places)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["watch", "keep-alive"])
def test_a_signal_ends_watch_and_keep_alive_as_it_ends_etcdctl(endpoint: str, command: str, sig: int) -> None:
    """etcdctl dies of the signal: a shell sees 128+N, nothing more is printed; etcdpy exits so."""
    from cli_tools import Running
    from procs import ETCDCTL_BIN

    from etcdpy.client import Client

    tools = ["etcdpy", "etcdctl"] if ETCDCTL_BIN is not None else ["etcdpy"]
    ends: dict[str, tuple[int, list[str], str]] = {}
    with Client(endpoint) as client:
        for tool in tools:
            key = f"signalled-{command}-{sig}-{tool}"
            if command == "watch":  # the stream starts at the put: PUT, key, value come at once
                rev = client.put(key.encode(), b"v").header.revision
                args, first = ["watch", "--rev", str(rev), key], 3
            else:
                args, first = ["lease", "keep-alive", f"{client.lease_grant(60).ID:x}"], 1
            running = Running(tool, endpoint, *args)
            try:
                running.lines(first)
                running.signal(sig)
                code = running.wait()
            finally:
                running.stop()
            shell_status = code if code >= 0 else 128 - code  # a death by signal N: 128+N
            ends[tool] = (shell_status, running.rest(), running.stderr())
    assert ends["etcdpy"] == (128 + sig, [], "")
    if "etcdctl" in ends:
        assert ends["etcdctl"] == ends["etcdpy"]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], [int(point) for point in sys.argv[5:]])
