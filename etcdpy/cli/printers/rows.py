"""Rows shared by the simple and table printers (etcdctl's make*Table helpers)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.printers import DBStatus, EndpointHashKV, EndpointHealth, EndpointStatus

Table = tuple[list[str], list[list[str]]]

_SI_SUFFIXES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def human_bytes(size: int) -> str:
    """go-humanize's Bytes: SI units, one decimal below 10 (``20 kB``, ``1.5 MB``)."""
    if size < 10:
        return f"{size} B"
    exponent = math.floor(math.log(size) / math.log(1000))
    value = math.floor(size / 1000**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {_SI_SUFFIXES[exponent]}" if value < 10 else f"{value:.0f} {_SI_SUFFIXES[exponent]}"


def go_bool(value: bool) -> str:
    return "true" if value else "false"


def member_list_table(response: pb.MemberListResponse) -> Table:
    header = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"]
    rows = [
        [
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            go_bool(m.isLearner),
        ]
        for m in response.members
    ]
    return header, rows


def endpoint_status_table(statuses: Sequence[EndpointStatus]) -> Table:
    header = [
        "endpoint",
        "ID",
        "version",
        "db size",
        "is leader",
        "is learner",
        "raft term",
        "raft index",
        "raft applied index",
        "errors",
    ]
    rows = []
    for status in statuses:
        r = status.response
        rows.append(
            [
                status.endpoint,
                f"{r.header.member_id:x}",
                r.version,
                human_bytes(r.dbSize),
                go_bool(r.leader == r.header.member_id),
                go_bool(r.isLearner),
                str(r.raftTerm),
                str(r.raftIndex),
                str(r.raftAppliedIndex),
                ", ".join(r.errors),
            ]
        )
    return header, rows


def endpoint_hashkv_table(hashes: Sequence[EndpointHashKV]) -> Table:
    return ["endpoint", "hash"], [[h.endpoint, str(h.response.hash)] for h in hashes]


def endpoint_health_table(healths: Sequence[EndpointHealth]) -> Table:
    return ["endpoint", "health", "took", "error"], [
        [h.endpoint, go_bool(h.health), h.took, h.error] for h in healths
    ]


def db_status_table(status: DBStatus) -> Table:
    header = ["hash", "revision", "total keys", "total size"]
    row = [f"{status.hash:x}", str(status.revision), str(status.total_key), human_bytes(status.total_size)]
    return header, [row]
