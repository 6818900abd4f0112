"""RunHistory: everything the workloads did and saw during one chaos run, for the checkers.

- ``kv``: register operations (get, put, delete, compare-and-set) on keys whose every
  write is recorded, for the linearizability checker;
- ``writes``: every acknowledged write that created a revision, with its revision and
  effects, for the watch checker and the lost-write check;
- ``revisions``: (call time, return time, header revision) of every linearizable
  request that completed, for the revision-order check;
- ``watchers`` and ``chains``: every watch stream as its client saw it;
- ``compactions``: the revisions compactions were asked for;
- ``anomalies``: what a workload found wrong by itself (a bank total that changed, a
  paginated list that does not add up, a fenced write that overlapped another).

All of it is safe to append to from many threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from etcdpy.checker import CommittedWrite, KvInput, KvOutput, Recorder, WatcherId, WatcherRecord
from etcdpy.checker.watch import Delete, Put

T = TypeVar("T")

PREFIX = b"/chaos/"  # every workload key lives under it; watchers watch it
HEALTH_PREFIX = b"/chaos-health/"  # the harness's own probes, outside what watchers watch


@dataclass(frozen=True)
class Anomaly:
    """Anomaly is one broken promise: which check found it and what it saw."""

    check: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


@dataclass(frozen=True)
class Timed:
    """Timed is a completed request's interval and the revision its response header carried."""

    call: float
    ret: float
    revision: int
    what: str


@dataclass
class RunHistory:
    """RunHistory collects what the workloads did; see the module docstring for each part."""

    clock: Callable[[], float] = time.monotonic
    kv: Recorder[KvInput, KvOutput] = field(init=False)
    writes: list[CommittedWrite] = field(default_factory=list)
    revisions: list[Timed] = field(default_factory=list)
    watchers: list[WatcherRecord] = field(default_factory=list)
    chains: list[list[WatcherId]] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    compactions: list[int] = field(default_factory=list)  # revisions a compaction was asked for
    counts: dict[str, int] = field(default_factory=dict)  # workload -> operations issued
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.kv = Recorder(self.clock)

    def count(self, workload: str) -> None:
        with self._lock:
            self.counts[workload] = self.counts.get(workload, 0) + 1

    def committed(self, revision: int, *ops: Put | Delete) -> None:
        """Record an acknowledged write that created `revision` (list only effective ops)."""
        with self._lock:
            self.writes.append(CommittedWrite(revision, tuple(ops)))

    def timed(self, call: float, revision: int, what: str) -> None:
        """Record a linearizable request called at `call`, answered now with header `revision`."""
        entry = Timed(call, self.clock(), revision, what)
        with self._lock:
            self.revisions.append(entry)

    def compacted(self, revision: int) -> None:
        """Record a compaction at `revision` (acknowledged or not: it excuses, it promises nothing)."""
        with self._lock:
            self.compactions.append(revision)

    def anomaly(self, check: str, detail: str) -> None:
        with self._lock:
            self.anomalies.append(Anomaly(check, detail))

    def watcher(self, record: WatcherRecord) -> None:
        with self._lock:
            self.watchers.append(record)

    def chain(self, ids: list[WatcherId]) -> None:
        if len(ids) > 1:
            with self._lock:
                self.chains.append(list(ids))

    @property
    def operations(self) -> int:
        return sum(self.counts.values())
