"""The fake disk and the fake network do what the simulation relies on."""

from __future__ import annotations

import random

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.checker import KvInput
from etcdpy.raft import MemoryStorage

from .application import ToyApplication
from .disk import FakeDisk, copy_storage
from .network import FakeNetwork, NetworkFaults, sender
from .statemachine import Command


def entries(first: int, last: int, term: int = 1) -> list[pb.Entry]:
    return [pb.Entry(index=i, term=term, data=b"%d" % i) for i in range(first, last + 1)]


def fresh_disk() -> FakeDisk:
    return FakeDisk(MemoryStorage())


def test_crash_loses_unsynced_entries_and_hard_state() -> None:
    disk = fresh_disk()
    disk.append(entries(1, 3))
    disk.set_hard_state(pb.HardState(term=1, vote=2, commit=1))
    disk.sync()
    disk.append(entries(4, 5))
    disk.set_hard_state(pb.HardState(term=2, vote=3, commit=3))
    disk.crash()
    assert disk.working.last_index() == 3
    assert (disk.working.hard_state.term, disk.working.hard_state.vote) == (1, 2)


def test_crash_keeps_a_synced_overwrite_of_a_suffix() -> None:
    disk = fresh_disk()
    disk.append(entries(1, 5))
    disk.sync()
    disk.append(entries(3, 4, term=2))
    disk.sync()
    disk.crash()
    stored = disk.working.entries(1, disk.working.last_index() + 1, 1 << 30)
    assert [(e.index, e.term) for e in stored] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_crash_loses_an_unsynced_snapshot_and_compaction() -> None:
    disk = fresh_disk()
    disk.append(entries(1, 10))
    disk.sync()
    disk.create_snapshot(8, pb.ConfState(voters=[1]), b"state at 8")
    disk.compact(6)
    disk.crash()
    assert (disk.working.snapshot().metadata.index, disk.working.first_index()) == (0, 1)


def test_copy_keeps_entries_between_the_compaction_point_and_the_snapshot() -> None:
    storage = MemoryStorage()
    storage.append(entries(1, 10))
    storage.create_snapshot(8, pb.ConfState(voters=[1, 2]), b"state at 8")
    storage.compact(6)
    storage.set_hard_state(pb.HardState(term=1, commit=9))
    copy = copy_storage(storage)
    assert (copy.first_index(), copy.last_index()) == (7, 10)
    assert copy.snapshot() == storage.snapshot()
    assert copy.hard_state == storage.hard_state
    assert copy.entries(7, 11, 1 << 30) == storage.entries(7, 11, 1 << 30)


def test_the_toy_store_restarts_from_its_copy_at_the_last_sync() -> None:
    app = ToyApplication()
    put = Command(1, KvInput.put("k", "v1"))
    app.apply([pb.Entry(index=1, term=1, data=put.encode())])
    app.sync()
    app.apply([pb.Entry(index=2, term=1, data=Command(2, KvInput.put("k", "v2")).encode())])
    app.crash()
    app.restart(fresh_disk())
    assert (app.applied, app.read(Command(3, KvInput.get("k"))).value) == (1, "v1")


def message(frm: int, to: int, index: int = 0, kind: pb.MessageType = pb.MsgHeartbeat) -> pb.Message:
    sent = pb.Message(type=kind, to=to, index=index)
    setattr(sent, "from", frm)  # `from` is a Python keyword
    return sent


def test_messages_arrive_after_their_delay_in_a_shuffled_order() -> None:
    network = FakeNetwork(random.Random(1), NetworkFaults(max_delay=3))
    for i in range(50):
        network.send(message(1, 2, i), now=0)
    arrived = [m.index for step in range(1, 5) for m in network.due(step)]
    assert sorted(arrived) == list(range(50))
    assert arrived != list(range(50))
    assert network.due(100) == []


def test_each_delivery_is_its_own_copy() -> None:
    network = FakeNetwork(random.Random(1), NetworkFaults(duplicate=1.0))
    sent = message(1, 2)
    network.send(sent, now=0)
    first, second = network.due(1)
    assert first == second == sent
    assert first is not second and first is not sent


def test_drops_follow_the_drop_rate() -> None:
    network = FakeNetwork(random.Random(1), NetworkFaults(drop=0.25))
    for _ in range(2000):
        network.send(message(1, 2), now=0)
    assert 400 < len(network.due(1)) < 2000 - 400


def test_partition_cuts_links_both_ways_until_healed() -> None:
    network = FakeNetwork(random.Random(1), NetworkFaults())
    network.partition({1}, {2, 3})
    network.cut_one_way(2, 3)
    for frm, to in ((1, 2), (2, 1), (2, 3), (3, 2)):
        network.send(message(frm, to), now=0)
    assert [(sender(m), m.to) for m in network.due(1)] == [(3, 2)]
    network.send(message(1, 2), now=1)
    network.heal()
    network.send(message(2, 1), now=1)
    assert [(sender(m), m.to) for m in network.due(2)] == [(2, 1)]


def test_lost_snapshots_are_reported_once() -> None:
    network = FakeNetwork(random.Random(1), NetworkFaults())
    network.partition({1}, {2})
    snap = message(1, 2, kind=pb.MsgSnap)
    network.send(snap, now=0)
    assert network.take_lost_snapshots() == [snap]
    assert network.take_lost_snapshots() == []
