"""``-w fields``: one ``"Name" : value`` line per field (printer_fields.go).

Numbers and booleans print as Go's Println would, byte strings with Go's ``%q``.
"""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.printers import DBStatus, EndpointHashKV, EndpointHealth, EndpointStatus, Printer
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.cli.printers.rows import go_bool


class FieldsPrinter(Printer):
    """Every field of the response, including zero values, in etcdctl's order."""

    name = "fields"

    def field(self, name: str, value: int | bool | str) -> None:
        text = go_bool(value) if isinstance(value, bool) else str(value)
        self.output.line(f'"{name}" : {text}')

    def quoted(self, name: str, value: bytes | str) -> None:
        self.output.line(f'"{name}" : {go_quote(value)}')

    def header(self, h: pb.ResponseHeader) -> None:
        self.field("ClusterID", h.cluster_id)
        self.field("MemberID", h.member_id)
        self.field("Revision", h.revision)
        self.field("RaftTerm", h.raft_term)

    def kv(self, prefix: str, kv: kv_pb2.KeyValue) -> None:
        self.quoted(f"{prefix}Key", bytes(kv.key))
        self.field(f"{prefix}CreateRevision", kv.create_revision)
        self.field(f"{prefix}ModRevision", kv.mod_revision)
        self.field(f"{prefix}Version", kv.version)
        self.quoted(f"{prefix}Value", bytes(kv.value))
        self.field(f"{prefix}Lease", kv.lease)

    def put(self, response: pb.PutResponse) -> None:
        self.header(response.header)
        if response.HasField("prev_kv"):
            self.kv("Prev", response.prev_kv)

    def get(self, response: pb.RangeResponse) -> None:
        self.header(response.header)
        for kv in response.kvs:
            self.kv("", kv)
        self.field("More", response.more)
        self.field("Count", response.count)

    def delete(self, response: pb.DeleteRangeResponse) -> None:
        self.header(response.header)
        self.field("Deleted", response.deleted)
        for kv in response.prev_kvs:
            self.kv("Prev", kv)

    def txn(self, response: pb.TxnResponse) -> None:
        self.header(response.header)
        self.field("Succeeded", response.succeeded)
        for op in response.responses:
            self.op_response(op)

    def member_list(self, response: pb.MemberListResponse) -> None:
        self.header(response.header)
        for m in response.members:
            self.field("ID", m.ID)
            self.quoted("Name", m.name)
            for url in m.peerURLs:
                self.quoted("PeerURL", url)
            for url in m.clientURLs:
                self.quoted("ClientURL", url)
            self.field("IsLearner", m.isLearner)
            self.output.line()

    def endpoint_status(self, statuses: Sequence[EndpointStatus]) -> None:
        for status in statuses:
            r = status.response
            self.header(r.header)
            self.quoted("Version", r.version)
            self.field("DBSize", r.dbSize)
            self.field("Leader", r.leader)
            self.field("IsLearner", r.isLearner)
            self.field("RaftIndex", r.raftIndex)
            self.field("RaftTerm", r.raftTerm)
            self.field("RaftAppliedIndex", r.raftAppliedIndex)
            # Go's Println of a []string: [a b c]
            self.field("Errors", "[" + " ".join(r.errors) + "]")
            self.quoted("Endpoint", status.endpoint)
            self.output.line()

    def endpoint_hashkv(self, hashes: Sequence[EndpointHashKV]) -> None:
        for h in hashes:
            self.header(h.response.header)
            self.quoted("Endpoint", h.endpoint)
            self.field("Hash", h.response.hash)
            self.output.line()

    def endpoint_health(self, healths: Sequence[EndpointHealth]) -> None:
        for h in healths:
            self.quoted("Endpoint", h.endpoint)
            self.field("Health", h.health)
            self.field("Took", h.took)
            self.field("Error", h.error)
            self.output.line()

    def db_status(self, status: DBStatus) -> None:
        self.field("Hash", status.hash)
        self.field("Revision", status.revision)
        self.field("Keys", status.total_key)
        self.field("Size", status.total_size)
