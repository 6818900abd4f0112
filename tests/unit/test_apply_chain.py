"""The apply chain: kinds from the proto, a handler or an explicit refusal for each, layers in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google.protobuf.message import Message
from test_mvcc_harness import Harness

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.apply import ApplyFn, Layer
from etcdpy.server.config import Config
from etcdpy.server.member import open_member
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.raft_requests import NOT_SERVED, REQUEST_KINDS, Request, RequestKind
from etcdpy.server.storage.backend import Backend

pb = rpc_pb2


def test_request_kinds_are_the_fields_of_internal_raft_request_but_header_and_id() -> None:
    fields = {field.name for field in raft_internal_pb2.InternalRaftRequest.DESCRIPTOR.fields}
    assert fields - {"header", "ID"} == REQUEST_KINDS
    assert NOT_SERVED < REQUEST_KINDS
    assert not NOT_SERVED  # every kind is served since auth is


def test_the_member_as_built_handles_every_request_kind_or_lists_it_as_not_served(tmp_path: Path) -> None:
    """A field added to InternalRaftRequest fails here until it gets a handler or a place in NOT_SERVED."""

    async def scenario() -> frozenset[RequestKind]:
        backend = Backend(tmp_path)
        config = Config(initial_advertise_peer_urls=("http://127.0.0.1:23800",)).validate()
        member = await open_member(config, backend)
        try:
            return member.applier.unhandled_kinds
        finally:
            await member.stop()
            backend.close()

    assert asyncio.run(scenario()) == frozenset()


def test_an_applier_given_no_handlers_names_the_kinds_it_cannot_apply(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.applier.unhandled_kinds == {
        kinds.LEASE_GRANT,
        kinds.LEASE_REVOKE,
        kinds.LEASE_CHECKPOINT,
        kinds.MEMBER_ATTRIBUTES,
        kinds.CLUSTER_VERSION_SET,
    } | {kind for kind in REQUEST_KINDS if kind.startswith("auth")}
    h.close()


def test_kinds_without_a_handler_and_entries_with_no_request_answer_not_capable(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    results = h.apply_entries(
        {"auth_enable": pb.AuthEnableRequest()},
        {"auth_user_add": pb.AuthUserAddRequest(name="root", password="secret")},
        {},  # a header and nothing else
    )
    assert [type(r.response) for r in results] == [errors.ErrNotCapable] * 3
    assert h.applier.applied_index == 3 and h.applier.current_revision == 1
    h.close()


@pytest.mark.parametrize("kind", [kinds.PUT, RequestKind("no_such_field")])
def test_a_handler_is_refused_for_the_appliers_own_kinds_and_unknown_kinds(
    tmp_path: Path, kind: RequestKind
) -> None:
    with pytest.raises(AssertionError):
        Harness(tmp_path, handlers={kind: lambda batch, request: pb.PutResponse()})


class Recorder:
    """A layer that records what reaches it and refuses keys starting with ``deny``."""

    def __init__(self) -> None:
        self.seen: list[tuple[RequestKind, int]] = []

    def __call__(self, batch: Batch, request: Request, apply_next: ApplyFn) -> Message:
        self.seen.append((request.kind, request.header.ID))
        if request.kind == kinds.PUT and getattr(request.body, "key", b"").startswith(b"deny"):
            raise errors.ErrPermissionDenied()
        return apply_next(batch, request)


def test_a_layer_sees_each_request_with_its_header_and_may_refuse_it(tmp_path: Path) -> None:
    recorder = Recorder()
    h = Harness(tmp_path, layers=[recorder])
    results = h.apply_entries(
        {"put": pb.PutRequest(key=b"a")},
        {"put": pb.PutRequest(key=b"deny/b")},
        {"delete_range": pb.DeleteRangeRequest(key=b"a")},
    )
    assert recorder.seen == [(kinds.PUT, 1), (kinds.PUT, 2), (kinds.DELETE_RANGE, 3)]
    assert isinstance(results[1].response, errors.ErrPermissionDenied)
    assert h.applier.current_revision == 3  # the refused put took no revision
    h.close()


def test_layers_run_in_order_below_the_alarms(tmp_path: Path) -> None:
    """etcd's order: corrupt -> capped -> auth: a request an alarm refuses never reaches the next layers."""
    order: list[str] = []

    def named(name: str) -> Layer:
        def layer(batch: Batch, request: Request, apply_next: ApplyFn) -> Message:
            order.append(name)
            return apply_next(batch, request)

        return layer

    h = Harness(tmp_path, layers=[named("first"), named("second")])
    h.put(b"a")
    assert order == ["first", "second"]
    order.clear()
    h.apply(alarm=pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=1, alarm=pb.CORRUPT))
    order.clear()
    with pytest.raises(errors.ErrCorrupt):
        h.put(b"b")
    assert order == []
    h.close()
