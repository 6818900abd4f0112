"""A follower catches up by a large raft snapshot with its memory bounded (real processes, real LevelDB).

The follower is down while 200 MB of values are written (the state holds each value
twice, as history and as the current record: about 400 MB), so the leader's log no
longer reaches back and it sends the whole state as a snapshot.  The receiver spools
the stream to a file and installs it in bounded batches.

What is measured: the peak of the receiver's anonymous memory (RssAnon, sampled while
it catches up) over its level before.  VmHWM also counts the pages of LevelDB's table
files that LevelDB maps into memory (it reads tables through mmap), page cache that
grows with the database whoever writes it, so it says nothing about what the install
holds.  LevelDB's own floor, two memtables of 64 MB, is paid by any writer: the bound is
that floor plus a margin, well under the state (before spooling, the same catch-up grew
it by 942 MiB, more than twice the state; with it, by about 205 MiB).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from cluster_support import ProcCluster
from procs import ServerProcess

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.chaos.cluster import serves, wait_until
from etcdpy.client import Client
from etcdpy.server.failpoints import CRASH_EXIT_CODE
from etcdpy.server.storage import snapshot
from etcdpy.server.storage.backend import LEVELDB_OPTIONS, Backend

SNAPSHOT_ARGS = ["--snapshot-count", "20", "--snapshot-catchup-entries", "5"]
VALUE_BYTES = 1 << 20
VALUES = int(os.environ.get("ETCDPY_SPOOL_TEST_VALUES", "200"))  # MB of values written
MIB = 1 << 20
# What any writer of this much data costs: LevelDB's memtable and the one being flushed, plus room for
# the allocator's and the process's own growth (measured: +122 MiB for a 100 MiB state, +205 for 400).
FLOOR_BYTES = 2 * LEVELDB_OPTIONS["write_buffer_size"] + 128 * MIB


def status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status, in KiB (0 once the process is gone or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakSampler:
    """Samples a process's RssAnon until stopped; the kernel keeps no peak of it (VmHWM counts files too)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "RssAnon"))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak_kib * 1024


def applied(client: Client, member: ServerProcess) -> int:
    try:
        return int(client.status(member.endpoint, timeout=2.0).raftAppliedIndex)
    except Exception:
        return -1


def test_a_follower_catches_up_by_a_large_snapshot_with_bounded_memory(tmp_path: Path) -> None:
    cluster = ProcCluster("etcdpy", tmp_path, 3, extra_args=SNAPSHOT_ARGS)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        behind = next(m for m in cluster.members if m is not leader)
        assert behind.proc is not None
        # The level before: the same member serving with a small state (its first life).
        before = status_kib(behind.proc.pid, "RssAnon") * 1024
        assert before > 0
        behind.stop()
        with Client([leader.endpoint], command_timeout=30.0) as client:
            for i in range(VALUES):
                client.put(f"/big/{i:04d}".encode(), os.urandom(VALUE_BYTES))
            state_bytes = 2 * VALUES * VALUE_BYTES
            target = applied(client, leader)
            behind.start(wait=False)
            assert behind.proc is not None
            sampler = PeakSampler(behind.proc.pid)
            started = time.monotonic()
            try:
                # It serves clients once it has published itself, so after the whole snapshot: be generous.
                behind.wait_ready(timeout=90)
                wait_until(lambda: applied(client, behind) >= target, 60, "the follower did not catch up")
            finally:
                peak = sampler.stop()
            took = time.monotonic() - started
            hwm = status_kib(behind.proc.pid, "VmHWM") * 1024
            grown = peak - before
            print(
                f"state ~{state_bytes // MIB} MiB caught up in {took:.1f}s: anonymous memory "
                f"{before // MIB} -> peak {peak // MIB} MiB (+{grown // MIB}); VmHWM {hwm // MIB} MiB"
            )
            assert "installed snapshot" in behind.read_log(), "it caught up without a snapshot"
            revision = client.get(b"/big/0000").header.revision
            hashes = {client.hash_kv(revision, m.endpoint).hash for m in cluster.members}
            assert len(hashes) == 1, "the members' histories differ after the snapshot"
            assert 0.7 * state_bytes > FLOOR_BYTES, "the state is too small to tell bounded from not"
            assert grown < FLOOR_BYTES, f"receiving {state_bytes} bytes grew the memory by {grown}"
            snap_dir = behind.data_dir / "member" / "snap"
            assert not snap_dir.exists() or not list(snap_dir.iterdir()), "the spooled file was kept"
    finally:
        cluster.stop()


class Crash(Exception):
    pass


def test_a_member_restarted_after_a_crash_in_the_middle_of_an_install_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real process's start finishes an install interrupted between the marker and the final batch.

    No failpoint sits inside the install, so the member crashes at raftBeforeApplySnap with the
    received file on disk, and the test carries the install on for two bounded batches, as the
    member would have, before "crashing" (the process writes nothing more).
    """
    cluster = ProcCluster("etcdpy", tmp_path, 3, extra_args=SNAPSHOT_ARGS)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        behind = next(m for m in cluster.members if m is not leader)
        behind.stop()
        with Client([leader.endpoint], command_timeout=10.0) as client:
            for i in range(60):
                client.put(f"/k{i}".encode(), os.urandom(2000))
            term = client.status(leader.endpoint).header.raft_term  # one election: every entry's term
            voters = sorted(m.ID for m in client.member_list().members)
            monkeypatch.setenv("ETCDPY_FAILPOINTS", "raftBeforeApplySnap=crash")
            behind.start(wait=False)
            monkeypatch.delenv("ETCDPY_FAILPOINTS")
            assert behind.proc is not None and behind.proc.wait(timeout=60) == CRASH_EXIT_CODE
            (path,) = snapshot.spool_dir(behind.data_dir).iterdir()
            meta = pb.SnapshotMetadata(
                index=int(path.name.split(".")[0], 16), term=term, conf_state=pb.ConfState(voters=voters)
            )
            spooled = snapshot.SpooledSnapshot(path, snapshot.file_crc(path), path.stat().st_size)

            def crash_after_two(count: int) -> None:
                if count == 2:
                    raise Crash()

            backend = Backend(behind.data_dir)
            with pytest.raises(Crash):
                snapshot.install_file(backend, spooled, meta, batch_bytes=4096, after_batch=crash_after_two)
            backend.close()
            behind.start(timeout=60)
            wait_until(lambda: serves(behind, b"/k59"), 30, "the member does not serve again")
            assert "finished installing snapshot" in behind.read_log()
            revision = client.get(b"/k59").header.revision
            hashes = {client.hash_kv(revision, m.endpoint).hash for m in cluster.members}
            assert len(hashes) == 1, "the members' histories differ after the install was finished"
            assert not list(snapshot.spool_dir(behind.data_dir).iterdir())
    finally:
        cluster.stop()
