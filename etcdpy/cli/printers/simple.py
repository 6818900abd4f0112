"""``-w simple``: etcdctl's default, human-oriented output (printer_simple.go)."""

from __future__ import annotations

from collections.abc import Sequence

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.printers import DBStatus, EndpointHashKV, EndpointHealth, EndpointStatus, Printer
from etcdpy.cli.printers import rows as tables
from etcdpy.cli.printers.goformat import go_quote


def hex_escaped(data: bytes) -> bytes:
    """``--hex`` rendering: every byte as ``\\xNN``."""
    return "".join(f"\\x{b:02x}" for b in data).encode("ascii")


class SimplePrinter(Printer):
    """Keys and values as raw lines, OK/SUCCESS/FAILURE markers, comma-separated rows."""

    name = "simple"

    def kv(self, kv: kv_pb2.KeyValue) -> None:
        key, value = bytes(kv.key), bytes(kv.value)
        if self.hex_bytes:
            key, value = hex_escaped(key), hex_escaped(value)
        if not self.value_only:
            self.output.line(key)
        self.output.line(value)

    def put(self, response: pb.PutResponse) -> None:
        self.output.line("OK")
        if response.HasField("prev_kv"):
            self.kv(response.prev_kv)

    def get(self, response: pb.RangeResponse) -> None:
        for kv in response.kvs:
            self.kv(kv)

    def delete(self, response: pb.DeleteRangeResponse) -> None:
        self.output.line(str(response.deleted))
        for kv in response.prev_kvs:
            self.kv(kv)

    def txn(self, response: pb.TxnResponse) -> None:
        self.output.line("SUCCESS" if response.succeeded else "FAILURE")
        # etcdctl 3.4 prints a nested txn's results with Go's %+v; etcdpy shows them recursively.
        for op in response.responses:
            self.output.line()
            self.op_response(op)

    def _rows(self, table: tables.Table) -> None:
        for row in table[1]:
            self.output.line(", ".join(row))

    def member_list(self, response: pb.MemberListResponse) -> None:
        self._rows(tables.member_list_table(response))

    def member_add(self, response: pb.MemberAddResponse, name: str, *, auto_promote: bool = False) -> None:
        added = response.member
        self.output.line(f"Member {added.ID:16x} added to cluster {response.header.cluster_id:16x}")
        # The environment of the new member, ready to paste (etcdctl prints it in the simple format only).
        initial = [
            f"{name if m.ID == added.ID else m.name}={url}" for m in response.members for url in m.peerURLs
        ]
        self.output.line()
        self.output.line(f"ETCD_NAME={go_quote(name)}")
        self.output.line(f"ETCD_INITIAL_CLUSTER={go_quote(','.join(initial))}")
        self.output.line(f"ETCD_INITIAL_ADVERTISE_PEER_URLS={go_quote(','.join(added.peerURLs))}")
        self.output.line('ETCD_INITIAL_CLUSTER_STATE="existing"')
        if auto_promote:  # beyond etcd: the learner promotes itself once caught up
            self.output.line('ETCD_AUTO_PROMOTE="true"')

    def member_remove(self, member_id: int, response: pb.MemberRemoveResponse) -> None:
        self.output.line(f"Member {member_id:16x} removed from cluster {response.header.cluster_id:16x}")

    def member_update(self, member_id: int, response: pb.MemberUpdateResponse) -> None:
        self.output.line(f"Member {member_id:16x} updated in cluster {response.header.cluster_id:16x}")

    def member_promote(self, member_id: int, response: pb.MemberPromoteResponse) -> None:
        self.output.line(f"Member {member_id:16x} promoted in cluster {response.header.cluster_id:16x}")

    def move_leader(self, leader_id: int, target_id: int, response: pb.MoveLeaderResponse) -> None:
        self.output.line(f"Leadership transferred from {leader_id:x} to {target_id:x}")

    def endpoint_status(self, statuses: Sequence[EndpointStatus]) -> None:
        self._rows(tables.endpoint_status_table(statuses))

    def endpoint_hashkv(self, hashes: Sequence[EndpointHashKV]) -> None:
        self._rows(tables.endpoint_hashkv_table(hashes))

    def endpoint_health(self, healths: Sequence[EndpointHealth]) -> None:
        # etcdctl writes health lines to stderr, whatever the outcome.
        for h in healths:
            if not h.error:
                self.output.err_line(
                    f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}"
                )
            else:
                self.output.err_line(f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}")

    def db_status(self, status: DBStatus) -> None:
        self._rows(tables.db_status_table(status))
