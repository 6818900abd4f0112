"""An HTTP watcher across a leader kill on 3 members: it resumes on another member and misses nothing.

The watcher starts on the leader, reads `/v3/watch` as newline-separated JSON (the chaos harness's
`HttpRawWatch`, which its gateway-watch scenario runs under faults too), and when its stream
breaks it resumes on another member from the revision after the last event it received (what etcd3gw
users and etcd's own clients do).  A writer puts keys through whichever member answers, and the
leader is killed with SIGKILL halfway.  What the watcher saw must be the prefix's history exactly (as
a fresh watch from the start replays it afterwards): ordered, no duplicate, no gap, every
acknowledged write in it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path

import requests
from cluster_support import ProcCluster, running_cluster
from procs import ServerProcess

from etcdpy.chaos.httpwatch import HttpRawWatch
from etcdpy.chaos.watching import prefix_watch

PREFIX = b"hw/"
WRITES = 40
Event = tuple[int, bytes, bytes]  # (mod revision, key, value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def read_watch(
    member: ServerProcess, start_revision: int, seen: list[Event], until: Callable[[], int]
) -> None:
    """Append the events of one HTTP watch stream from `start_revision` until it reaches `until()`.

    A stream that breaks first raises `WatchBroken` (an OSError).
    """
    watch = HttpRawWatch(member.endpoint, prefix_watch(PREFIX, start_revision))
    try:
        for response in watch:
            seen.extend((e.kv.mod_revision, e.kv.key, e.kv.value) for e in response.events)
            if seen and seen[-1][0] >= until():
                return
    finally:
        watch.close()


class HttpWatcher(threading.Thread):
    """Watches the prefix over HTTP, resuming on the next live member whenever a stream breaks."""

    def __init__(self, cluster: ProcCluster, first: ServerProcess, start_revision: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.first = first
        self.start_revision = start_revision
        self.seen: list[Event] = []
        self.resumes = 0
        self.until = 1 << 62  # set once the writer is done
        self.error: BaseException | None = None

    def run(self) -> None:
        member = self.first
        try:
            for _attempt in range(200):
                start = self.seen[-1][0] + 1 if self.seen else self.start_revision
                with contextlib.suppress(OSError):  # the member died under the stream: resume elsewhere
                    read_watch(member, start, self.seen, lambda: self.until)
                if self.seen and self.seen[-1][0] >= self.until:
                    return
                self.resumes += 1
                alive = [m for m in self.cluster.alive() if m is not member] or self.cluster.alive()
                member = alive[self.resumes % len(alive)]
        except BaseException as exc:  # reported by the test
            self.error = exc


def put_anywhere(cluster: ProcCluster, key: bytes, value: bytes) -> int | None:
    """Put through the first live member that answers; its revision, or None if every attempt failed."""
    for _round in range(50):
        for member in cluster.alive():
            try:
                answer = requests.post(
                    f"{member.client_url}/v3/kv/put",
                    data=json.dumps({"key": b64(key), "value": b64(value)}),
                    timeout=5,
                )
            except requests.RequestException:
                continue
            if answer.status_code == 200:
                return int(answer.json()["header"]["revision"])
    return None


def replay(member: ServerProcess, start_revision: int, until: int) -> list[Event]:
    seen: list[Event] = []
    read_watch(member, start_revision, seen, lambda: until)
    return seen


def test_an_http_watcher_resumes_across_a_leader_kill_and_misses_nothing(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        start = put_anywhere(cluster, b"hw-start", b"")
        assert start is not None
        watcher = HttpWatcher(cluster, leader, start + 1)
        watcher.start()
        acknowledged: list[Event] = []
        for i in range(WRITES):
            if i == WRITES // 2:
                leader.kill()
            key, value = PREFIX + b"%02d" % i, b"v%d" % i
            revision = put_anywhere(cluster, key, value)
            if revision is not None:
                acknowledged.append((revision, key, value))
        last = put_anywhere(cluster, PREFIX + b"end", b"end")
        assert last is not None
        watcher.until = last
        # The watcher may have read the last event before `until` was set: one more event wakes it.
        assert put_anywhere(cluster, PREFIX + b"nudge", b"") is not None
        watcher.join(timeout=120)
        assert not watcher.is_alive(), f"the watcher stalled after {len(watcher.seen)} events"
        assert watcher.error is None, watcher.error
        history = replay(cluster.alive()[0], start + 1, last)
    assert watcher.resumes >= 1  # its first stream was on the killed leader
    seen = [event for event in watcher.seen if event[0] <= last]
    assert seen == [event for event in history if event[0] <= last]  # ordered, unique, none missed
    assert seen[-1] == (last, PREFIX + b"end", b"end")
    assert set(acknowledged) <= set(watcher.seen)
    assert len(acknowledged) == WRITES
