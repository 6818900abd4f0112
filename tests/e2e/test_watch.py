"""Watch guarantees on a real member (etcd and etcdpy alike), checked by etcdpy.checker on recorded histories.

Writers (puts, deletes, two-key txns) and watchers run at once; some watchers
start in the past, one reads slowly, and a compaction happens while they watch.
Every watcher ends by asking for progress past the last write, so reliability
is checked up to the end of the history.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.checker.watch import (
    CommittedWrite,
    Delete,
    Put,
    WatchCheckOptions,
    WatcherRecord,
    check_watches,
    history_from_writes,
)
from etcdpy.client import Client, op_put
from etcdpy.client import requests as rq
from etcdpy.client.watch import Watch, watch_create_request

pytestmark = pytest.mark.server_kinds("etcd", "etcdpy")

KEYS = [b"w/a", b"w/b", b"w/ba", b"w/c", b"x"]


class Recorded:
    """One watcher on its own stream, read on a thread until a progress response reaches ``until``."""

    def __init__(self, client: Client, request: pb.WatchCreateRequest, *, slow: bool = False) -> None:
        self.request = request
        self.responses: list[pb.WatchResponse] = []
        self.stream: Watch = client.watch(request)
        self.slow = slow
        self.until = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for response in self.stream:
            self.responses.append(response)
            if self.slow and len(self.responses) < 40:
                time.sleep(0.02)
            if response.watch_id == -1 and self.until and response.header.revision >= self.until:
                break
        self.done.set()

    def finish(self, until: int) -> None:
        self.until = until
        self.stream.request_progress()
        assert self.done.wait(20), f"watcher {self.request} never caught up to {until}"
        self.stream.close()


def _writer(client: Client, seed: int, count: int, out: list[CommittedWrite], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    for step in range(count):
        key = rng.choice(KEYS)
        roll = rng.random()
        if roll < 0.6:
            value = b"%d-%d" % (seed, step)
            write = CommittedWrite(client.put(key, value).header.revision, (Put(key, value),))
        elif roll < 0.8:
            other = rng.choice([k for k in KEYS if k != key])
            txn = client.txn(
                success=[
                    op_put(rq.put_request(key, b"t%d" % step)),
                    op_put(rq.put_request(other, b"u%d" % step)),
                ]
            )
            write = CommittedWrite(txn.header.revision, (Put(key, b"t%d" % step), Put(other, b"u%d" % step)))
        else:
            deleted = client.delete(key)
            if not deleted.deleted:
                continue
            write = CommittedWrite(deleted.header.revision, (Delete(key),))
        with lock:
            out.append(write)


def test_concurrent_writers_and_watchers_keep_every_guarantee(server: ServerProcess) -> None:
    writes: list[CommittedWrite] = []
    lock = threading.Lock()
    with Client([server.endpoint]) as client:
        first = client.put("w/a", "0").header.revision
        writes.append(CommittedWrite(first, (Put(b"w/a", b"0"),)))
        watchers = [
            Recorded(client, watch_create_request("w/", prefix=True, prev_kv=True)),
            Recorded(client, watch_create_request("w/b")),
            Recorded(client, watch_create_request("", from_key=True), slow=True),
            Recorded(client, watch_create_request("w/", prefix=True, start_revision=first, prev_kv=True)),
            Recorded(client, watch_create_request("w/a", "w/c", filters=[pb.WatchCreateRequest.NOPUT])),
        ]
        threads = [
            threading.Thread(target=_writer, args=(Client([server.endpoint]), seed, 120, writes, lock))
            for seed in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        # Watchers joining mid-way, some from the past.
        watchers.append(Recorded(client, watch_create_request("w/", prefix=True, start_revision=first + 1)))
        watchers.append(Recorded(client, watch_create_request("x", start_revision=first)))
        for thread in threads:
            thread.join()
        middle = sorted(w.revision for w in writes)[len(writes) // 2]
        client.compact(middle)
        # One watcher starts below the compaction: it must be cancelled with the compact revision.
        compacted = Recorded(client, watch_create_request("w/", prefix=True, start_revision=first))
        last = client.put("w/c", "end").header.revision
        writes.append(CommittedWrite(last, (Put(b"w/c", b"end"),)))
        for watcher in watchers:
            watcher.finish(last)
        assert compacted.done.wait(10)
        compacted.stream.close()
    records = [WatcherRecord(i, w.request, w.responses) for i, w in enumerate([*watchers, compacted])]
    cancel = [r for r in compacted.responses if r.canceled]
    assert cancel and cancel[0].compact_revision == middle
    history = history_from_writes(sorted(writes, key=lambda w: w.revision), compactions=[middle])
    options = WatchCheckOptions(
        require_compaction_reason=server.kind == "etcdpy", allow_compacted_tombstones=True
    )
    result = check_watches(history, records, options=options)
    assert result.ok, result.explain()
    assert sum(len(r.events) for w in watchers for r in w.responses) > 100  # the run did watch something
