"""The public API of etcdpy.raft: what the server and the simulator build on."""

from __future__ import annotations

import dataclasses
import inspect

import etcdpy.raft as raft


def test_all_names_exist() -> None:
    for name in raft.__all__:
        assert hasattr(raft, name), name


def test_rawnode_methods() -> None:
    want = {
        "tick",
        "step",
        "campaign",
        "propose",
        "propose_many",
        "propose_conf_change",
        "apply_conf_change",
        "read_index",
        "transfer_leader",
        "has_ready",
        "ready",
        "advance",
        "status",
        "report_unreachable",
        "report_snapshot",
    }
    have = {n for n, _ in inspect.getmembers(raft.RawNode, inspect.isfunction)}
    assert want <= have, want - have


def test_ready_is_a_frozen_dataclass_with_the_contract_fields() -> None:
    fields = {f.name for f in dataclasses.fields(raft.Ready)}
    assert fields == {
        "soft_state",
        "hard_state",
        "read_states",
        "entries",
        "snapshot",
        "committed_entries",
        "messages",
        "persisted_messages",
        "must_sync",
    }
    assert raft.Ready.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert raft.Ready.__doc__ and "persisted_messages" in raft.Ready.__doc__


def test_config_fields() -> None:
    fields = {f.name for f in dataclasses.fields(raft.RaftConfig)}
    assert {
        "id",
        "election_tick",
        "heartbeat_tick",
        "storage",
        "applied",
        "max_size_per_msg",
        "max_inflight_msgs",
        "check_quorum",
        "pre_vote",
        "max_uncommitted_entries_size",
        "rand",
        "disable_proposal_forwarding",
    } <= fields


def test_memory_storage_satisfies_the_storage_protocol() -> None:
    storage: raft.Storage = raft.MemoryStorage()
    assert storage.first_index() == 1 and storage.last_index() == 0
