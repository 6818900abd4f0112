"""gRPC settings, which grpc reads once, from the environment, when it is first imported.

A client command (any ``etcdpy`` command but ``server``) only silences grpc's log lines (`quiet_client`).

The server's settings (`apply`) are set only by a process that runs a member, before anything
imports grpc: ``etcdpy server`` (`apply_for_command_line`, called by ``etcdpy.cli`` before its
commands import grpc) and ``python -m etcdpy.server``.  Importing etcdpy as a library leaves the
process's grpc settings alone, and a client command changes only the log level.  A value the user already
put in ``GRPC_EXPERIMENTS`` for the same experiment wins.

``-event_engine_listener``: a server accepts and reads its connections through gRPC
core's older (iomgr) listener rather than the EventEngine one, which hands each
message through more threads before grpc.aio's loop sees it.  A message on a peer
stream then reaches its handler sooner: a grpc.aio stream ping-pong between two
processes on this machine took 210-250 µs a round trip instead of 300-410 µs, a
linearizable read on a 3-member cluster's follower 1.0 ms instead of 1.16 ms, and check perf m
rose from 916 to 953 writes/s (bench/RESULTS.md, 2026-11-29 13:50 UTC).

The experiment is named only for grpcio releases known to have it: an experiment
grpc does not know is reported on stderr, which would spoil the CLI's output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

EXPERIMENTS_ENV = "GRPC_EXPERIMENTS"
VERBOSITY_ENV = "GRPC_VERBOSITY"
LISTENER_EXPERIMENT = "event_engine_listener"
# grpcio releases known to have the experiment: the 1.60 wheel has it, and so does 1.85 (its default: on).
KNOWN_RELEASES = ((1, 60), (1, 86))
SERVER_COMMAND = "server"
# The programs that are etcdpy's click entry point: the console script, and ``python -m etcdpy``
# (runpy sets argv[0] to the module's file before it runs).
_PROGRAM_NAMES = ("etcdpy", "etcdpy.exe")
_MAIN_MODULE = Path(__file__).resolve().with_name("__main__.py")


def grpc_release() -> tuple[int, int] | None:
    """The installed grpcio's (major, minor), read without importing grpc; None if unknown."""
    try:
        spec = importlib.util.find_spec("grpc")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    try:
        text = (Path(spec.origin).parent / "_grpcio_metadata.py").read_text()
    except OSError:
        return None
    found = re.search(r"(\d+)\.(\d+)\.", text)
    return None if found is None else (int(found[1]), int(found[2]))


def experiments(current: str, release: tuple[int, int] | None) -> str:
    """``GRPC_EXPERIMENTS`` with the legacy listener added where this grpcio knows the experiment."""
    if LISTENER_EXPERIMENT in current or release is None:
        return current
    low, high = KNOWN_RELEASES
    if not low <= release < high:
        return current
    return ",".join(part for part in (current, f"-{LISTENER_EXPERIMENT}") if part)


def apply() -> None:
    """Set the environment for grpc, unless grpc is already imported (then it is too late)."""
    if "grpc" in sys.modules:
        return
    current = os.environ.get(EXPERIMENTS_ENV, "")
    wanted = experiments(current, grpc_release())
    if wanted != current:
        os.environ[EXPERIMENTS_ENV] = wanted


def runs_server(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (``sys.argv``) is the command line of ``etcdpy server``.

    The program must be etcdpy's entry point (the console script or ``python -m etcdpy``) and
    its first word that is not a flag ``server``.  A flag before the command counts only as
    one word (``--debug server``, ``--write-out=json server``): ``-w json server`` is not recognised,
    and that member runs on grpc's default listener (slower, not wrong).
    """
    if not runs_etcdpy(argv):
        return False
    command = next((word for word in argv[1:] if not word.startswith("-")), None)
    return command == SERVER_COMMAND


def runs_etcdpy(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is the command line of etcdpy's entry point (the console script or
    ``python -m etcdpy``)."""
    if not argv:
        return False
    program = Path(argv[0])
    return program.name in _PROGRAM_NAMES or program.resolve() == _MAIN_MODULE


def quiet_client() -> None:
    """Load grpc with its own log lines off, unless ``GRPC_VERBOSITY`` says otherwise.

    A client command prints etcdctl's output and nothing else, but grpc logs a refused TLS handshake
    (``ssl_transport_security_utils.cc ... BAD_CERTIFICATE``) on stderr at its default level.  grpc
    reads the level once, as it loads, so the variable is set only for the import and removed after:
    the programs a command starts (``lock -- cmd``) inherit the user's environment unchanged.
    """
    if VERBOSITY_ENV in os.environ or "grpc" in sys.modules:
        return
    os.environ[VERBOSITY_ENV] = "NONE"
    try:
        import grpc  # noqa: F401 (loaded for its side effect: the level is read now)
    finally:
        del os.environ[VERBOSITY_ENV]


def apply_for_command_line(argv: Sequence[str]) -> None:
    """`apply` if this process is ``etcdpy server``, `quiet_client` for etcdpy's other commands; any
    other program (etcdpy imported as a library) changes nothing."""
    if runs_server(argv):
        apply()
    elif runs_etcdpy(argv):
        quiet_client()
