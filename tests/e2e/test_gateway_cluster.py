"""An HTTP watcher across a leader kill on 3 members: it resumes on another member and misses nothing.

The watcher starts on the leader, reads `/v3/watch` as newline-separated JSON, and when its stream
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
import socket
import threading
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import requests
from cluster_support import ProcCluster, running_cluster
from procs import ServerProcess

PREFIX = b"hw/"
WRITES = 40
Event = tuple[int, bytes, bytes]  # (mod revision, key, value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def watch_body(start_revision: int) -> bytes:
    create = {"key": b64(PREFIX), "range_end": b64(PREFIX[:-1] + bytes([PREFIX[-1] + 1]))}
    create["start_revision"] = str(start_revision)
    return json.dumps({"create_request": create}).encode()


def chunks(reader: BinaryIO) -> Iterator[bytes]:
    """The newline-separated objects of a chunked response body, until the stream breaks."""
    pending = b""
    while True:
        size_line = reader.readline()
        if not size_line.strip():
            return
        size = int(size_line.strip(), 16)
        if size == 0:
            return
        pending += reader.read(size + 2)[:-2]
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line


def read_watch(member: ServerProcess, start_revision: int, seen: list[Event], until: int) -> None:
    """Append the events of one HTTP watch stream from `start_revision` until it breaks or reaches `until`."""
    body = watch_body(start_revision)
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=30) as sock:
        sock.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        with sock.makefile("rb") as reader:
            if not reader.readline().startswith(b"HTTP/1.1 200"):
                return
            while reader.readline() not in (b"\r\n", b""):
                pass
            for line in chunks(reader):
                for event in json.loads(line).get("result", {}).get("events", []):
                    kv = event["kv"]  # a zero value (an empty one) is left out of the JSON
                    seen.append(
                        (int(kv["mod_revision"]), b64decode(kv["key"]), b64decode(kv.get("value", "")))
                    )
                if seen and seen[-1][0] >= until:
                    return


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
                    read_watch(member, start, self.seen, self.until)
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
    read_watch(member, start_revision, seen, until)
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
