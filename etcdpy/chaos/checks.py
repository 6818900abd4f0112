"""Checkers run over a chaos run's history once its faults are healed.

Each returns a `Verdict`: which check, whether it held, how much it looked at, and
what it found.  `None` for `held` means the check could not decide (the
linearizability search ran out of time): that is not a pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.chaos.cluster import ChaosCluster
from etcdpy.chaos.history import RunHistory
from etcdpy.chaos.watching import RawWatch
from etcdpy.checker import (
    KV_MODEL,
    CommittedWrite,
    Outcome,
    check_operations,
    check_watches,
    history_from_writes,
)
from etcdpy.checker.watch import Put
from etcdpy.client import Client, TLSConfig

LINEARIZABILITY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Verdict:
    """Verdict is one checker's finding."""

    check: str
    held: bool | None
    checked: int  # operations, events or members looked at
    detail: str = ""

    def __str__(self) -> str:
        state = {True: "ok", False: "VIOLATED", None: "UNDECIDED"}[self.held]
        text = f"{self.check}: {state} ({self.checked} checked)"
        return f"{text}\n{self.detail}" if self.detail and not self.held else text


def check_linearizable(history: RunHistory) -> Verdict:
    """The register operations are linearizable (writes of unknown outcome may or may not have happened)."""
    operations = history.kv.operations()
    result = check_operations(KV_MODEL, operations, timeout=LINEARIZABILITY_TIMEOUT)
    held = {Outcome.OK: True, Outcome.ILLEGAL: False, Outcome.UNKNOWN: None}[result.outcome]
    return Verdict("linearizable", held, len(operations), "" if held else result.explain(KV_MODEL))


def check_watch_guarantees(history: RunHistory, final_revision: int) -> Verdict:
    """Every watch stream keeps etcd's watch guarantees against the acknowledged writes."""
    store = history_from_writes(history.writes, last_revision=final_revision, compactions=history.compactions)
    result = check_watches(store, history.watchers, chains=history.chains)
    events = sum(len(r.events) for w in history.watchers for r in w.responses)
    return Verdict("watch guarantees", result.ok, events, result.explain(limit=30))


def check_revision_order(history: RunHistory) -> Verdict:
    """A request that starts after another answered never sees an older revision (real-time order)."""
    by_return = sorted(history.revisions, key=lambda t: t.ret)
    problems: list[str] = []
    done = 0
    latest = None  # the answered request with the highest revision so far
    for timed in sorted(history.revisions, key=lambda t: t.call):
        while done < len(by_return) and by_return[done].ret < timed.call:
            if latest is None or by_return[done].revision > latest.revision:
                latest = by_return[done]
            done += 1
        if latest is not None and timed.revision < latest.revision:
            problems.append(
                f"{timed.what} called at {timed.call:.3f} got revision {timed.revision}, but {latest.what} "
                f"had already answered revision {latest.revision} at {latest.ret:.3f}"
            )
    return Verdict("revision order", not problems, len(history.revisions), "\n".join(problems[:20]))


def read_all_events(
    endpoint: str, final_revision: int, timeout: float = 30.0, tls: TLSConfig | None = None
) -> tuple[int, list[kv_pb2.Event]] | None:
    """One member's events up to `final_revision`, from revision 2 or, if compacted, the compaction on.

    Returns the revision the events start at and the events; None when the member does
    not deliver them within `timeout`.
    """
    events: list[kv_pb2.Event] = []
    done = threading.Event()
    start = 2
    deadline = time.monotonic() + timeout
    while not done.is_set() and time.monotonic() < deadline:
        watch = RawWatch(
            endpoint, pb.WatchCreateRequest(key=b"\0", range_end=b"\0", start_revision=start), tls
        )
        compacted: list[int] = []

        def drain(watch: RawWatch = watch, compacted: list[int] = compacted) -> None:
            try:
                for response in watch:
                    if response.compact_revision:
                        compacted.append(response.compact_revision)
                        return
                    events.extend(response.events)
                    if events and events[-1].kv.mod_revision >= final_revision:
                        done.set()
                        return
            except grpc.RpcError:
                return

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        reader.join(max(deadline - time.monotonic(), 0))
        watch.close()
        reader.join(10)
        if not compacted:
            break
        start, events[:] = compacted[0], []
    return (start, events) if done.is_set() else None


def lost_writes(writes: Sequence[CommittedWrite], start: int, events: Sequence[kv_pb2.Event]) -> list[str]:
    """The acknowledged writes from revision `start` on that a member's history (`events`) does not hold.

    (Writes below `start` were compacted away.)
    """
    at: dict[tuple[int, bytes], kv_pb2.Event] = {(e.kv.mod_revision, e.kv.key): e for e in events}
    problems = []
    for write in writes:
        if write.revision < start:
            continue
        for op in write.ops:
            event = at.get((write.revision, op.key))
            if event is None:
                problems.append(f"the acknowledged {op} at revision {write.revision} is missing")
            elif isinstance(op, Put) and (event.type != event.PUT or event.kv.value != op.value):
                problems.append(
                    f"revision {write.revision} holds {event.kv.value!r} for {op.key!r}, "
                    f"the acknowledged write put {op.value!r}"
                )
            elif not isinstance(op, Put) and event.type != event.DELETE:
                problems.append(f"revision {write.revision} did not delete {op.key!r} as acknowledged")
    return problems


def check_no_acked_write_lost(
    history: RunHistory, endpoints: Sequence[str], final_revision: int, tls: TLSConfig | None = None
) -> Verdict:
    """Every member's history holds every acknowledged write at the revision it was acknowledged with."""
    problems: list[str] = []
    for endpoint in endpoints:
        read = read_all_events(endpoint, final_revision, tls=tls)
        if read is None:
            problems.append(f"{endpoint}: its history could not be read up to revision {final_revision}")
        else:
            problems += [f"{endpoint}: {problem}" for problem in lost_writes(history.writes, *read)]
    writes = sum(len(w.ops) for w in history.writes)
    return Verdict(
        "no acknowledged write lost", not problems, writes * len(endpoints), "\n".join(problems[:20])
    )


def check_hashes_agree(client: Client, endpoints: Sequence[str], final_revision: int) -> Verdict:
    """HashKV at the final revision is the same on every member."""
    hashes: dict[str, tuple[int, int] | str] = {}
    for endpoint in endpoints:
        try:
            response = client.hash_kv(final_revision, endpoint, timeout=10.0)
            hashes[endpoint] = (response.hash, response.compact_revision)
        except Exception as err:
            hashes[endpoint] = f"no answer: {err}"
    held = len(set(hashes.values())) == 1 and all(isinstance(h, tuple) for h in hashes.values())
    detail = "\n".join(f"{endpoint}: {value}" for endpoint, value in hashes.items())
    return Verdict("hashkv equal", held, len(endpoints), detail)


class RevisionPoller:
    """RevisionPoller reads every member's revision a few times a second, for `verdict`.

    A member's revision must never go down while one process runs (a restart may
    replay, so each process lifetime is judged on its own).
    """

    def __init__(self, cluster: ChaosCluster, interval: float = 0.2) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples = 0
        self.problems: list[str] = []
        self._last: dict[tuple[str, int], int] = {}  # (member, start number) -> last revision seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="revision-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _poll(self) -> None:
        with Client(
            self.cluster.endpoints, command_timeout=1.0, dial_timeout=0.5, tls=self.cluster.client_tls
        ) as client:
            while not self._stop.wait(self.interval):
                for member in self.cluster.members:
                    lifetime = (member.name, member.starts)
                    if not member.running or member.paused:
                        continue
                    try:
                        revision = client.status(member.endpoint, timeout=0.5).header.revision
                    except Exception:
                        continue
                    if lifetime != (member.name, member.starts):
                        continue  # restarted meanwhile: the answer may come from either process
                    self.samples += 1
                    last = self._last.get(lifetime, 0)
                    if revision < last:
                        self.problems.append(
                            f"{member.name} (start #{member.starts}) went from {last} to {revision}"
                        )
                    self._last[lifetime] = max(last, revision)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def verdict(self) -> Verdict:
        self.stop()
        return Verdict(
            "member revision never decreases", not self.problems, self.samples, "\n".join(self.problems)
        )
