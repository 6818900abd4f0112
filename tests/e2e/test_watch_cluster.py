"""Watch guarantees across a leader kill on a 3-member etcdpy cluster, checked on recorded histories.

Writers (puts, deletes, two-key txns) go through every endpoint while several
watchers read, spread over the members: some start in the past, some ask for
prev_kv, one reads slowly.  Mid-run the leader is killed with SIGKILL.  A
watcher whose stream breaks resumes on another member from the revision after
the last one it received (its last event or progress notification), as etcd's
client does; each watcher's links are checked as one resumed chain.  Writes
whose outcome their writer never learned leave gaps in the known history,
which the checker fills from what the watchers saw.
"""

from __future__ import annotations

import os
import pty
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cluster_support import ProcCluster, running_cluster
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.checker.watch import (
    CommittedWrite,
    Delete,
    Put,
    WatcherRecord,
    check_watches,
    history_from_writes,
)
from etcdpy.client import Client, EtcdError, op_put
from etcdpy.client import requests as rq
from etcdpy.client.watch import Watch, watch_create_request

KEYS = [b"w/a", b"w/b", b"w/ba", b"w/c", b"x"]
WRITERS = 3
WRITES_EACH = 70
KILL_AFTER = 60  # committed writes before the leader is killed
FINISH_SECONDS = 30.0


class Link:
    """One watch stream on one member: the request it was created with and what it received."""

    def __init__(self, member: ServerProcess, request: pb.WatchCreateRequest) -> None:
        self.member = member
        self.request = request
        self.responses: list[pb.WatchResponse] = []
        self.client = Client([member.endpoint], dial_timeout=1.0)
        self.broken = False
        # The client would resume by itself; the test resumes on another member, so each link is recorded.
        self.stream: Watch = self.client.watch(request, on_lost=self._lost)

    def _lost(self, err: EtcdError) -> None:
        self.broken = True
        self.stream.close()  # ends the iteration instead of a failover


class ResumingWatcher:
    """A watch that resumes on the next member after its stream breaks, from the last revision received + 1.

    A reading thread records every link; `finish` asks for progress until a
    progress notification reaches the run's last revision.
    """

    def __init__(
        self, members: Sequence[ServerProcess], first: int, request: pb.WatchCreateRequest, *, slow: bool
    ) -> None:
        self.members = list(members)
        self.at = first  # index in members of the current link's member
        self.slow = slow
        self.links = [Link(self.members[first], request)]
        self.last = request.start_revision - 1 if request.start_revision else 0  # last revision received
        self.until = 0  # once set, the revision a progress notification must reach to finish
        self.done = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self._read(self.links[-1]):
                self._resume()
        except BaseException as exc:  # reported by finish: a thread's exception would go unseen
            self.failure = exc
        finally:
            self.done.set()

    def _read(self, link: Link) -> bool:
        """Record the link's responses; True once finished, False when the stream broke."""
        try:
            for response in link.stream:
                link.responses.append(response)
                if response.created and not link.request.start_revision:
                    self.last = response.header.revision
                elif response.events:
                    self.last = response.events[-1].kv.mod_revision
                elif response.watch_id == -1:  # progress: every event up to here was delivered
                    self.last = max(self.last, response.header.revision)
                    if self.until and response.header.revision >= self.until:
                        return True
                if self.slow and len(link.responses) < 60:
                    time.sleep(0.02)
        except EtcdError:  # not a broken stream: an answer (no leader, ...), resumed all the same
            link.broken = True
            link.stream.close()
        if link.broken:
            return False
        raise AssertionError(f"the watch on {link.member.name} ended without a break: {link.responses[-1:]}")

    def _resume(self) -> None:
        self.at = (self.at + 1) % len(self.members)
        request = pb.WatchCreateRequest()
        request.CopyFrom(self.links[0].request)
        request.start_revision = self.last + 1
        self.links.append(Link(self.members[self.at], request))

    def finish(self, until: int) -> None:
        self.until = until
        deadline = time.monotonic() + FINISH_SECONDS
        while not self.done.wait(0.2):  # the stream may move meanwhile: ask the current link each time
            assert time.monotonic() < deadline, f"watcher never caught up to {until}: {self.describe()}"
            self.links[-1].stream.request_progress()
        for link in self.links:
            link.stream.close()
            link.client.close()
        if self.failure is not None:
            raise self.failure

    def describe(self) -> str:
        """The request and, per link, its member, start, responses and last revision seen."""
        links = [
            f"{link.member.name} from {link.request.start_revision}: {len(link.responses)} responses"
            f"{' (broken)' if link.broken else ''}, last header {link.responses[-1].header.revision}"
            if link.responses
            else f"{link.member.name} from {link.request.start_revision}: nothing"
            for link in self.links
        ]
        return f"{self.links[0].request} last={self.last}; " + "; ".join(links)

    def records(self, index: int) -> list[WatcherRecord]:
        return [
            WatcherRecord(f"{index}.{n}", link.request, link.responses, ended_early=link.broken)
            for n, link in enumerate(self.links)
        ]


class Writers:
    """Writer threads through every endpoint; `killable` is set once `KILL_AFTER` writes committed."""

    def __init__(self, cluster: ProcCluster) -> None:
        self.writes: list[CommittedWrite] = []
        self.unknown = 0  # writes whose outcome their writer never learned
        self.lock = threading.Lock()
        self.killable = threading.Event()
        endpoints = [m.endpoint for m in cluster.members]
        self.threads = [
            threading.Thread(target=self._write, args=(seed, endpoints[seed:] + endpoints[:seed]))
            for seed in range(WRITERS)
        ]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _write(self, seed: int, endpoints: list[str]) -> None:
        rng = random.Random(seed)
        with Client(endpoints, command_timeout=4.0) as client:
            for step in range(WRITES_EACH):
                try:
                    write = _one_write(client, rng, seed, step)
                except EtcdError:
                    with self.lock:
                        self.unknown += 1
                    continue
                if write is None:
                    continue
                with self.lock:
                    self.writes.append(write)
                    if len(self.writes) >= KILL_AFTER:
                        self.killable.set()


def _one_write(client: Client, rng: random.Random, seed: int, step: int) -> CommittedWrite | None:
    """A put, a two-key txn or a delete; None for a delete that deleted nothing (no revision)."""
    key = rng.choice(KEYS)
    roll = rng.random()
    if roll < 0.6:
        value = b"%d-%d" % (seed, step)
        return CommittedWrite(client.put(key, value).header.revision, (Put(key, value),))
    if roll < 0.8:
        other = rng.choice([k for k in KEYS if k != key])
        ops = (Put(key, b"t%d-%d" % (seed, step)), Put(other, b"u%d-%d" % (seed, step)))
        txn = client.txn(success=[op_put(rq.put_request(op.key, op.value)) for op in ops])
        return CommittedWrite(txn.header.revision, ops)
    deleted = client.delete(key)
    return CommittedWrite(deleted.header.revision, (Delete(key),)) if deleted.deleted else None


def test_watchers_resumed_on_another_member_after_a_leader_kill_miss_nothing(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        members = [leader, *(m for m in cluster.members if m is not leader)]  # watchers start on the leader
        with Client([leader.endpoint]) as client:
            first = client.put("w/a", "0").header.revision
        writes = [CommittedWrite(first, (Put(b"w/a", b"0"),))]
        requests = [
            (watch_create_request("w/", prefix=True, prev_kv=True), False),
            (watch_create_request("", from_key=True), True),  # the slow reader sees every revision
            (watch_create_request("w/b"), False),
            (watch_create_request("w/", prefix=True, start_revision=first, prev_kv=True), False),
            (watch_create_request("w/a", "w/c", filters=[pb.WatchCreateRequest.NOPUT]), False),
            (watch_create_request("", from_key=True, start_revision=first, prev_kv=True), False),
        ]
        watchers = [
            ResumingWatcher(members, i % len(members), request, slow=slow)
            for i, (request, slow) in enumerate(requests)
        ]
        writers = Writers(cluster)
        assert writers.killable.wait(60), "the writers never committed enough writes"
        leader.kill()
        writers.join()
        survivor = next(m for m in cluster.members if m is not leader)
        with Client([m.endpoint for m in cluster.alive()], command_timeout=10.0) as client:
            last = client.put("w/c", "end").header.revision
        writes.extend(writers.writes)
        writes.append(CommittedWrite(last, (Put(b"w/c", b"end"),)))
        for watcher in watchers:
            watcher.finish(last)
        assert survivor.proc is not None and survivor.proc.poll() is None
    history = history_from_writes(writes)
    chains = [watcher.records(i) for i, watcher in enumerate(watchers)]
    result = check_watches(
        history,
        [record for chain in chains for record in chain],
        chains=[[record.watcher_id for record in chain] for chain in chains],
    )
    assert result.ok, result.explain()
    on_leader = [w for w in watchers if w.links[0].member is leader]
    assert on_leader and all(len(w.links) > 1 for w in on_leader), "a stream on the killed leader never broke"
    resumed_events = sum(len(r.events) for w in on_leader for link in w.links[1:] for r in link.responses)
    assert resumed_events > 0, "no event arrived after a resume: the run did not test resuming"
    assert sum(len(r.events) for w in watchers for link in w.links for r in link.responses) > 300


class CliWatch:
    """`etcdpy watch` in a child process, its stdout a pipe or (``tty``) a pseudo-terminal."""

    def __init__(self, endpoints: list[str], args: list[str], *, tty: bool) -> None:
        command = [sys.executable, "-m", "etcdpy", "--endpoints", ",".join(endpoints), "watch", *args]
        env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
        self.output = bytearray()
        self.grew = threading.Condition()
        if tty:
            self.read_fd, child_out = pty.openpty()
        else:
            self.read_fd, child_out = os.pipe()
        self.proc = subprocess.Popen(
            command, stdout=child_out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
        )
        os.close(child_out)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:  # a pseudo-terminal whose child exited
                chunk = b""
            with self.grew:
                if not chunk:
                    self.grew.notify_all()
                    return
                self.output += chunk
                self.grew.notify_all()

    def wait_for(self, text: bytes, timeout: float = 30.0) -> None:
        with self.grew:
            if not self.grew.wait_for(lambda: text in self.output, timeout):
                raise AssertionError(
                    f"{text!r} never shown; output so far:\n{self.output.decode(errors='replace')}"
                )

    def stop(self) -> str:
        """Stop the watch; what it wrote to stderr."""
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        os.close(self.read_fd)
        return err.decode(errors="replace")


def test_cli_watch_fails_over_when_its_member_dies_and_shows_every_event_once(tmp_path: Path) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        connected = next(m for m in cluster.members if m is not leader)
        others = [m.endpoint for m in cluster.members if m is not connected]
        with Client(others) as client:
            start = client.put("f/0", "first").header.revision
            args = ["--prefix", "f/", "--rev", str(start)]
            endpoints = [connected.endpoint, *others]
            piped = CliWatch(endpoints, args, tty=False)
            live = CliWatch(endpoints, args, tty=True)
            try:
                writes = [(b"f/0", b"first")]
                for i in range(1, 21):
                    writes.append((b"f/%d" % i, b"v%d" % i))
                    client.put(*writes[-1])
                piped.wait_for(b"f/20\nv20\n")
                live.wait_for(b"@%d" % (start + 20))
                connected.kill()
                for i in range(21, 41):
                    writes.append((b"f/%d" % i, b"v%d" % i))
                    client.put(*writes[-1])
                piped.wait_for(b"f/40\nv40\n")
                live.wait_for(b"@%d" % (start + 40))
            finally:
                piped_err, live_err = piped.stop(), live.stop()
    assert bytes(piped.output) == b"".join(b"PUT\n%s\n%s\n" % write for write in writes)
    assert piped_err == ""  # etcdctl retries silently
    shown = bytes(live.output).decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "")
    assert f"connection to {connected.endpoint} lost" in plain
    resumed = re.search(r"reconnected to (\S+), resuming at revision (\d+)", plain)
    assert resumed is not None, plain
    assert resumed.group(1) in others and int(resumed.group(2)) <= start + 21
    lines = [line for line in plain.splitlines() if " PUT " in line]
    assert [line.split("  @")[-1] for line in lines] == [str(start + i) for i in range(41)], plain
    assert live_err == ""
