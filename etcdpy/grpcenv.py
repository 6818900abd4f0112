"""gRPC settings that grpc reads once, from the environment, when it is first imported.

``etcdpy/__init__`` applies them before anything else runs, so they hold in every
process that imports etcdpy before grpc: the server, the CLI, the tests.  A value the
user already put in ``GRPC_EXPERIMENTS`` for the same experiment wins.

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
from pathlib import Path

EXPERIMENTS_ENV = "GRPC_EXPERIMENTS"
LISTENER_EXPERIMENT = "event_engine_listener"
# grpcio releases known to have the experiment: the 1.60 wheel has it, and so does 1.85 (its default: on).
KNOWN_RELEASES = ((1, 60), (1, 86))


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
