"""SIGINT/SIGTERM for the commands that run until interrupted (lock, elect, watch, lease keep-alive).

Python runs a signal handler in the main thread between any two bytecodes,
so a handler that raises can cut into grpc's or threading's code anywhere.
The commands therefore run their grpc work on a worker thread
(`run_until_signal`) while the main thread only waits on a plain lock, where
`Interrupted` is harmless; `Stopper` ends the worker's streams from the main
thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO, TypeVar

T = TypeVar("T")
WORKER_NAME = "etcdpy-cli-worker"  # the thread `run_until_signal` runs its work on
# Seconds between two looks at pending signals while the main thread waits for a lock: a signal
# the kernel delivers to another thread does not wake a lock wait, only the next look sees it.
SIGNAL_POLL = 0.1


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while waiting (for the lock, a campaign, events, or the end)."""


class Signals:
    """The SIGINT/SIGTERM handler of one command: raises `Interrupted` once, or passes them to a child.

    Installed by `interruptible`; Python runs it in the main thread, between bytecodes.
    """

    def __init__(self) -> None:
        self._child: int | None = None  # the process group signals go to, once set
        # signals held back while a child process or a worker thread is being started
        self._deferred: list[int] | None = None
        self.received: int | None = None  # the signal that raised `Interrupted`, once one did

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self._deferred is not None:
            self._deferred.append(signum)
        elif self._child is not None:
            signal_group(self._child, signum)
        else:
            self.ignore()  # cleanup after the first signal must not be cut short by a second one
            self.received = signum
            raise Interrupted()

    def defer(self) -> None:
        """Hold signals back (a child or a worker thread is about to start) instead of raising."""
        self._deferred = []

    def raise_held(self) -> None:
        """Raise signals again from now on; `Interrupted` at once if one was held back meanwhile."""
        held, self._deferred = self._deferred, None  # one step: a handler cannot run in between
        if held:
            self.ignore()
            self.received = held[0]
            raise Interrupted()

    def forward_to(self, pid: int) -> None:
        """Send the held-back signals and every later one to the process group ``pid``."""
        held, self._deferred, self._child = self._deferred or [], None, pid
        for signum in held:
            signal_group(pid, signum)

    def ignore(self) -> None:
        """Ignore both signals from now on (the end is near: release and exit)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    def killed_exit(self) -> SystemExit:
        """The exit of a process the received signal killed, as a shell reports it: 128+N (130 for SIGINT).

        etcdctl's watch and keep-alive do not handle signals: Go's runtime dies of them.
        """
        return SystemExit(128 + (self.received or signal.SIGINT))


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group ``pid``, if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


@contextlib.contextmanager
def interruptible() -> Iterator[Signals]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread while the block runs (see `Signals`)."""
    signals = Signals()
    previous = {sig: signal.signal(sig, signals.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_until_signal(signals: Signals, work: Callable[[], T], stop: Callable[[], None]) -> T:
    """``work()`` run on a worker thread while the main thread only waits: its result, error or `Interrupted`.

    Python runs the handler in the main thread between any two bytecodes, and
    `Interrupted` raised in the middle of grpc's or threading's code can leave
    them half-updated (a watch call created without the thread that drives it:
    the process then hangs closing its channel; a condition's lock left held),
    or be taken for a failure (grpc turns any exception while it encodes or
    decodes a message into an INTERNAL error of the call).  So the main thread
    here does nothing but block on a lock, where the exception is harmless.  On a signal, ``stop`` (which
    must make ``work`` return soon, from another thread) is called, the worker
    is awaited and `Interrupted` raised, whatever ``work`` ended with.
    """
    done = threading.Lock()  # held until the worker ends
    done.acquire()
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as err:  # handed to the main thread, which raises it
            failures.append(err)
        finally:
            done.release()

    worker = threading.Thread(target=run, name=WORKER_NAME, daemon=True)
    signals.defer()  # starting a thread takes threading's locks: no exception in there
    worker.start()
    try:
        signals.raise_held()
        await_release(done, signals)
    except Interrupted:
        stop()
        worker.join()
        raise
    worker.join()
    if failures:
        raise failures[0]
    return results[0]


def run_or_die_of_signal(work: Callable[[], T], stopper: Stopper) -> T:
    """``work()`` on `run_until_signal`'s worker; a signal ends the command as etcdctl dies of it.

    For commands etcdctl leaves to Go's default signal handling (watch, lease
    keep-alive): ``stopper`` closes what the work opened, and the exit is 128+N
    with nothing printed (`Signals.killed_exit`).
    """
    with interruptible() as signals:
        try:
            return run_until_signal(signals, work, stopper.stop)
        except Interrupted:
            raise signals.killed_exit() from None
        finally:
            signals.ignore()


def await_release(lock: threading.Lock, signals: Signals | None = None) -> None:
    """Acquire ``lock`` (held by another thread until it is done) where `Interrupted` may safely be raised.

    A plain lock is C code: the exception is raised with the lock either
    acquired or not, never halfway (unlike `threading.Event` or `Thread.join`,
    whose Python code can be left with a lock held or a live thread marked ended).
    With ``signals``, a signal whose `Interrupted` was lost (Python swallows an
    exception raised in a weakref callback or a ``__del__`` the main thread ran)
    is raised again here: the handler ignores later signals, none would come.
    """
    while not lock.acquire(timeout=SIGNAL_POLL):
        if signals is not None and signals.received is not None:
            raise Interrupted()


class Stopper:
    """What a worker opened (streams, calls) for `stop` to close from the main thread, now or once opened.

    The worker registers each close with `on_stop` right after opening, and
    checks `stopped` before a step it must not take once stopped (printing,
    running a command).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False  # guarded by _lock; never unset
        self._closers: list[Callable[[], None]] = []  # guarded by _lock; emptied by stop

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called."""
        return self._stopped

    def on_stop(self, close: Callable[[], None]) -> None:
        """Have `stop` call ``close``; call it at once if `stop` came already."""
        with self._lock:
            if not self._stopped:
                self._closers.append(close)
                return
        close()

    def stop(self) -> None:
        """Close everything registered, and anything registered later as it comes."""
        with self._lock:
            self._stopped = True
            closers, self._closers = self._closers, []
        for close in closers:
            close()


class StdinLines:
    """The lines of a text input, read on a worker thread; `stop` (from any thread) ends them at once.

    A read blocked in a worker cannot be interrupted by a signal, so the file
    descriptor is read only once `select` finds it (or a wake-up pipe written
    by `stop`) ready.  An input without a descriptor (in memory) is read as is.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation is both
            self._fd = None
        self._wake_read, self._wake_write = os.pipe()

    def __enter__(self) -> StdinLines:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._wake_read)
        os.close(self._wake_write)

    def stop(self) -> None:
        """End the iteration (now, or before its next read)."""
        os.write(self._wake_write, b".")

    def __iter__(self) -> Iterator[str]:
        if self._fd is None:
            yield from (raw.rstrip("\n") for raw in self._stream)
            return
        encoding, errors = self._stream.encoding or "utf-8", self._stream.errors or "strict"
        pending = b""
        while True:
            ready, _, _ = select.select([self._fd, self._wake_read], [], [])
            if self._wake_read in ready:
                return
            data = os.read(self._fd, 65536)
            if not data:  # the end: a last line without its newline still counts
                if pending:
                    yield pending.decode(encoding, errors)
                return
            *complete, pending = (pending + data).split(b"\n")
            for line in complete:
                yield line.decode(encoding, errors)
