"""``lock <lockname> [exec-command arg1 arg2 ...]``: etcdctl's lock, plus --timeout and a guarded command.

As etcdctl: the lock is a ``concurrency.Mutex`` on a session of ``--ttl``
seconds (default 10), so etcdctl and etcdpy holders exclude each other.
Without a command, the lock key is printed (like ``get``) and held until
SIGINT/SIGTERM, then released.  With a command, the command runs holding the
lock with ETCD_LOCK_KEY and ETCD_LOCK_REV in its environment; afterwards the
lock is released and a failed command is reported as ``Error: exit status N``.

Beyond etcdctl 3.4:
- ``lock`` exits with the command's exit code (128+N for a signal N), as later etcdctl does;
- ETCD_LOCK_REV is the lock key's create revision, the fencing token (etcdctl
  gives the revision it saw when acquiring): a write guarded by
  ``create_revision(ETCD_LOCK_KEY) == ETCD_LOCK_REV`` fails once the lock is lost;
- if the session is lost while the command runs, the command's process group
  gets SIGTERM, then SIGKILL after ``--grace``, and ``lock`` fails;
- SIGINT/SIGTERM given to ``lock`` while the command runs go to the command,
  and the lock is released once it exits;
- ``--timeout`` gives up waiting (nothing is left queued);
- the session's lease is revoked on exit instead of being left to expire.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading

import click

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.durations import format_duration_ns
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import GoDuration, GoInt64, command_options
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.cli.signals import (
    Interrupted,
    Signals,
    Stopper,
    await_release,
    interruptible,
    run_until_signal,
    signal_group,
)
from etcdpy.client import Client
from etcdpy.client.concurrency import Mutex, Session, SessionExpired

CANCELED = "context canceled"  # what etcdctl says when interrupted while waiting
LOCK_TTL = 10  # etcdctl lock's --ttl default (not the session's 60)


def wait_for_end(session: Session, signals: Signals) -> bool:
    """Block until interrupted (True) or the session is lost (False)."""
    lost = threading.Lock()  # held until the session is lost
    lost.acquire()
    session.add_lost_callback(lost.release)
    try:
        await_release(lost, signals)
    except Interrupted:
        return True
    return False


class SessionWork:
    """A session opened by work on `run_until_signal`'s worker; `stop` ends it from the main thread.

    Ending the session ends any wait on it (`Mutex.lock` and `Election.campaign`
    raise SessionExpired) and revokes its lease, so nothing is left queued.
    """

    def __init__(self, client: Client, ttl: int) -> None:
        self._client = client
        self._ttl = ttl
        self._stopper = Stopper()
        self.session: Session | None = None  # set by `open` on the worker; read once it has ended

    def open(self) -> Session:
        """Open the session (on the worker); SessionExpired if `stop` came first (it is closed then)."""
        session = self.session = Session(self._client, ttl=self._ttl)
        self._stopper.on_stop(lambda: _revoke(session))
        if self._stopper.stopped:
            raise SessionExpired()
        return session

    def stop(self) -> None:
        """Close the session, now or as soon as it is opened."""
        self._stopper.stop()

    def close(self) -> None:
        """Revoke the session's lease, if it was opened (after the worker ended, signals ignored)."""
        if self.session is not None:
            _revoke(self.session)


def _revoke(session: Session) -> None:
    with contextlib.suppress(EtcdError):
        session.close()


@click.command(
    "lock",
    short_help="Acquires a named lock",
    help="Acquires a named lock, prints its key and holds it until interrupted; with a command, "
    "runs it holding the lock (ETCD_LOCK_KEY, ETCD_LOCK_REV set) and exits with its exit code. "
    "Usage: lock <lockname> [--] [exec-command arg1 arg2 ...]",
)
@click.argument("args", nargs=-1, metavar="<lockname> [exec-command arg1 arg2 ...]")
@click.option("--ttl", type=GoInt64(), default=LOCK_TTL, show_default=True, help="timeout for session")
@click.option(
    "--timeout",
    type=GoDuration(),
    default=None,
    help="give up waiting for the lock after this long, e.g. 30s; 0 waits forever (etcdpy only)",
)
@click.option(
    "--grace",
    type=GoDuration(),
    default="10s",
    show_default=True,
    help="when the lock is lost, time between SIGTERM and SIGKILL to the command (etcdpy only)",
)
@command_options
@pass_state
def lock(state: CliState, args: tuple[str, ...], ttl: int, timeout: float | None, grace: float) -> None:
    """Acquire a named lock, hold it until interrupted or while a command runs."""
    if not args:
        raise CliError(
            ExitCode.BAD_ARGS, "lock takes a lock name argument and an optional command to execute"
        )
    name, command = args[0], list(args[1:])
    printer = state.printer()
    client = state.client()
    wait = timeout if timeout is not None and timeout > 0 else None
    with interruptible() as signals:
        work = SessionWork(client, ttl)

        def acquire() -> tuple[Mutex, pb.RangeResponse | None]:
            mutex = _acquire(work.open(), name, wait)
            return mutex, None if command else client.get(mutex.key)

        try:
            mutex, response = run_until_signal(signals, acquire, work.stop)
            assert work.session is not None
            if command:
                _run_holding(state, work.session, mutex, command, grace, signals)
                return
            assert response is not None
            try:
                if not response.kvs:
                    raise CliError(ExitCode.ERROR, "lock lost on init")
                printer.get(response)
                state.output.flush()
                interrupted = wait_for_end(work.session, signals)
            except Interrupted:
                interrupted = True
            if not interrupted:
                raise CliError(ExitCode.ERROR, "session expired")
            signals.ignore()
            mutex.unlock()
        except Interrupted:  # while acquiring, or between two steps above
            raise CliError(ExitCode.ERROR, CANCELED) from None
        finally:
            signals.ignore()
            work.close()


def _acquire(session: Session, name: str, timeout: float | None) -> Mutex:
    mutex = Mutex(session, name)
    try:
        mutex.lock(timeout=timeout)
    except TimeoutError:
        assert timeout is not None
        waited = format_duration_ns(round(timeout * 1e9))
        raise CliError(
            ExitCode.ERROR, f"lock {go_quote(name)} not acquired within {waited} (--timeout)"
        ) from None
    except SessionExpired:
        raise CliError(ExitCode.ERROR, "session expired") from None
    return mutex


def _run_holding(
    state: CliState,
    session: Session,
    mutex: Mutex,
    command: list[str],
    grace: float,
    signals: Signals,
) -> None:
    """Run ``command`` holding the lock; release it; fail like etcdctl, or with the lock lost."""
    env = dict(os.environ)
    env["ETCD_LOCK_KEY"] = mutex.key.decode("utf-8", "surrogateescape")
    env["ETCD_LOCK_REV"] = str(mutex.revision)
    signals.defer()
    try:
        child = _spawn(command, env)
    except CliError:
        signals.ignore()
        mutex.unlock()
        raise
    signals.forward_to(child.pid)
    guard = _Guard(child, grace)
    session.add_lost_callback(guard.terminate)
    child.wait()
    guard.exited.set()
    if guard.terminated.is_set() or not _release(session, mutex):
        raise CliError(
            ExitCode.ERROR,
            f"session expired: lock {go_quote(mutex.key)} lost while the command ran"
            + (" (command terminated)" if guard.terminated.is_set() else ""),
        )
    code = child.returncode
    if code > 0:
        state.output.err_line(f"Error: exit status {code}")
        raise SystemExit(code)
    if code < 0:
        state.output.err_line(f"Error: signal: {_signal_name(-code)}")
        raise SystemExit(128 - code)


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the command in its own process group (so it can be stopped whole), stdin from /dev/null."""
    program = command[0]
    if "/" not in program and shutil.which(program, path=env.get("PATH")) is None:
        raise CliError(ExitCode.ERROR, f"exec: {go_quote(program)}: executable file not found in $PATH")
    try:
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0)
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise CliError(ExitCode.ERROR, f"fork/exec {program}: {reason}") from None


def _release(session: Session, mutex: Mutex) -> bool:
    """Delete the lock key if it is still ours; whether it was, once the command had exited.

    The check is a read and the delete is guarded by the key's create revision, so each may be
    sent again when its answer is lost with a leader (a txn that both checked and deleted could
    not: sent twice, its second copy would find the key gone and report the lock lost).
    """
    if session.lost.is_set():
        return False
    held = session.client.txn([mutex.is_owner()]).succeeded
    mutex.unlock()
    return held


class _Guard:
    """Stops the command when the lock is lost: SIGTERM to its group, SIGKILL after ``grace`` seconds."""

    def __init__(self, child: subprocess.Popen[bytes], grace: float) -> None:
        self.child = child
        self.grace = grace
        self.terminated = threading.Event()
        self.exited = threading.Event()  # set by the waiting thread once the child is reaped

    def terminate(self) -> None:
        """Runs on the session's keep-alive thread when the lease is found gone."""
        if self.exited.is_set() or self.child.returncode is not None:
            return
        self.terminated.set()
        self._signal(signal.SIGTERM)
        threading.Thread(target=self._kill_after_grace, daemon=True).start()

    def _kill_after_grace(self) -> None:
        if not self.exited.wait(self.grace):
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        signal_group(self.child.pid, sig)


def _signal_name(signum: int) -> str:
    """Go's name of a signal ("terminated", "killed", "interrupt")."""
    text = signal.strsignal(signum) or f"signal {signum}"
    return text[:1].lower() + text[1:]


def register(group: click.Group) -> None:
    """Add lock to the top-level group."""
    group.add_command(lock)
