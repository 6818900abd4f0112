"""Differential transcripts of the JSON gateway: the same HTTP requests to etcd 3.4 and to etcdpy.

`STEPS` covers every gateway path etcdpy serves (KV, lease under both prefixes, cluster, maintenance,
lock, election, the three streams) plus /version, the /v3beta/ prefix, unknown paths, wrong methods
and bad bodies.  Lease IDs are given explicitly so lock keys (``name/<lease hex>``) match too.
`normalise` masks only what legitimately differs between two fresh servers: cluster and member ids,
raft terms and indexes, db sizes, hashes, member names and URLs, remaining TTLs, and the wording of
a JSON decoding error (Go's encoding/json and protobuf's json_format word them differently; status
and code are still compared).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from procs import ServerProcess

from etcdpy.chaos.cluster import wait_until


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


LEASE = "7587"  # hex 1da3: lock keys become "<name>/1da3" on both servers
LEASE2 = "7588"


@dataclass(frozen=True)
class Step:
    path: str
    body: str | dict[str, Any] | None = None  # a dict is sent as JSON, a str as it is
    method: str = "POST"
    lines: int = 0  # a stream: read this many newline-separated objects, then close
    mask: tuple[str, ...] = ()  # extra keys whose values differ legitimately (anywhere in the body)
    decode_error: bool = False  # the error text is the JSON decoder's own
    not_gateway: tuple[str, ...] = ()  # keys etcdpy's services answer beyond etcd 3.4, over gRPC too


STEPS: tuple[Step, ...] = (
    Step("/version", method="GET"),
    Step("/version", body={}, method="POST"),
    Step("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")}),
    Step("/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True}),
    Step("/v3/kv/put", {"key": b64("foo2"), "value": b64("x")}),
    Step("/v3/kv/range", {"key": b64("foo")}),
    Step("/v3beta/kv/range", {"key": b64("foo")}),
    Step("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "limit": "1"}),
    Step("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "limit": 1, "sort_order": "DESCEND"}),
    Step("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "count_only": True}),
    Step("/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "keys_only": True, "sort_target": 1}),
    Step("/v3/kv/range", {"key": b64("foo"), "revision": "2"}),
    Step("/v3/kv/range", {"key": b64("foo"), "revision": 100}),
    Step("/v3/kv/range", {"key": b64("foo"), "serializable": True, "unknown_field": 1}),
    Step("/v3/kv/range", {"key": b64("nothing")}),
    Step("/v3/kv/range", ""),
    Step("/v3/kv/range", "null"),
    Step("/v3/kv/range", '{"key":', decode_error=True),
    Step("/v3/kv/range", '{"key": 5}', decode_error=True),
    Step("/v3/kv/range", "[1]", decode_error=True),
    Step("/v3/kv/range", {"key": b64("foo"), "sort_order": "SIDEWAYS"}, decode_error=True),
    Step("/v3/kv/range", method="GET"),
    Step(
        "/v3/kv/txn",
        {
            "compare": [{"key": b64("foo"), "target": "VALUE", "result": "EQUAL", "value": b64("baz")}],
            "success": [
                {"request_put": {"key": b64("t"), "value": b64("1")}},
                {"request_range": {"key": b64("foo")}},
            ],
            "failure": [{"request_delete_range": {"key": b64("t")}}],
        },
    ),
    Step(
        "/v3/kv/txn",
        {
            "compare": [{"key": b64("foo"), "target": "VERSION", "result": "GREATER", "version": "10"}],
            "failure": [{"request_range": {"key": b64("t")}}],
        },
    ),
    Step("/v3/kv/txn", {"success": [{"request_put": {"key": b64("")}}]}),
    Step("/v3/kv/deleterange", {"key": b64("foo2"), "prev_kv": True}),
    Step("/v3/kv/deleterange", {"key": b64("none")}),
    Step("/v3/kv/compaction", {"revision": "3", "physical": True}),
    Step("/v3/kv/range", {"key": b64("foo"), "revision": "2"}),
    Step("/v3/kv/compaction", {"revision": "100"}),
    Step("/v3/lease/grant", {"TTL": "60", "ID": LEASE}),
    Step("/v3/lease/grant", {"TTL": 60, "ID": LEASE}),
    Step("/v3/lease/grant", {"TTL": 60, "ID": LEASE2}),
    Step("/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": LEASE}),
    Step("/v3/lease/timetolive", {"ID": LEASE, "keys": True}, mask=("TTL",)),
    Step("/v3/kv/lease/timetolive", {"ID": LEASE}, mask=("TTL",)),
    Step("/v3/lease/timetolive", {"ID": "999"}),
    Step("/v3/lease/leases", {}),
    Step("/v3/kv/lease/leases", {}),
    Step("/v3/lease/keepalive", {"ID": LEASE}, lines=1, mask=("TTL",)),
    Step("/v3/lease/keepalive", {"ID": "999"}, lines=1),
    Step("/v3/lease/revoke", {"ID": "999"}),
    Step("/v3/kv/lease/revoke", {"ID": LEASE2}),
    Step("/v3/lock/lock", {"name": b64("mylock"), "lease": LEASE}),
    Step("/v3/lock/unlock", {"key": b64("mylock/1da3")}),
    Step("/v3/lock", {"name": b64("mylock")}),
    Step("/v3/election/leader", {"name": b64("el")}),
    Step("/v3/election/campaign", {"name": b64("el"), "lease": LEASE, "value": b64("one")}),
    Step("/v3/election/leader", {"name": b64("el")}),
    Step(
        "/v3/election/proclaim",
        {
            "leader": {"name": b64("el"), "key": b64("el/1da3"), "rev": "11", "lease": LEASE},
            "value": b64("two"),
        },
    ),
    Step("/v3/election/proclaim", {"value": b64("x")}),
    Step("/v3/election/observe", {"name": b64("el")}, lines=1),
    Step(
        "/v3/election/resign",
        {"leader": {"name": b64("el"), "key": b64("el/1da3"), "rev": "11", "lease": LEASE}},
    ),
    Step("/v3/watch", {"create_request": {"key": b64("foo"), "start_revision": "3"}}, lines=2),
    # etcdpy's watch stream (over gRPC as well) says why a watch was canceled; etcd 3.4 does not.
    Step(
        "/v3/watch",
        {"create_request": {"key": b64("t"), "start_revision": "1"}},
        lines=2,
        not_gateway=("cancel_reason",),
    ),
    Step("/v3/watch", '{"create_request": {"key": 5}}', lines=1, decode_error=True),
    Step("/v3/cluster/member/list", {}, mask=("ID", "name", "peerURLs", "clientURLs")),
    Step("/v3/cluster/member/remove", {"ID": "1234"}),
    Step("/v3/cluster/member/update", {"ID": "1234", "peerURLs": ["http://127.0.0.1:1"]}),
    Step("/v3/cluster/member/promote", {"ID": "1234"}),
    Step(
        "/v3/maintenance/status",
        {},
        mask=("leader", "raftIndex", "raftAppliedIndex", "raftTerm", "dbSize", "dbSizeInUse"),
    ),
    Step("/v3/maintenance/alarm", {}),
    Step("/v3/maintenance/alarm", {"action": "GET"}),
    Step("/v3/maintenance/hash", {}, mask=("hash",)),
    Step("/v3/maintenance/transfer-leadership", {"targetID": "1234"}),
    Step("/v3/nothing", {}),
    Step("/nothing", method="GET"),
    Step("/v3/kv/range", method="OPTIONS"),
)

HEADER_MASK = ("cluster_id", "member_id", "raft_term")
MASKED = "<masked>"


def _mask(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: MASKED if k in keys else _mask(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, keys) for v in value]
    return value


def _without(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def normalise(step: Step, status: int, content_type: str, texts: list[str]) -> tuple[int, str, Any]:
    """(status, content type, body) with the legitimate differences masked (JSON bodies parsed)."""
    bodies: list[Any] = []
    for text in texts:
        try:
            parsed = json.loads(text)
        except ValueError:
            bodies.append(text)
            continue
        parsed = _mask(_without(parsed, step.not_gateway), HEADER_MASK + step.mask)
        if step.decode_error and isinstance(parsed, dict) and "error" in parsed:
            parsed = {**parsed, "error": MASKED, "message": MASKED}
        bodies.append(parsed)
    return status, content_type, bodies


def run_step(base: str, step: Step) -> tuple[int, str, Any]:
    """Send one step; a stream's first `lines` objects are read, then the connection is dropped."""
    data = json.dumps(step.body) if isinstance(step.body, dict) else step.body
    with requests.request(step.method, base + step.path, data=data, stream=True, timeout=30) as response:
        if step.lines:
            texts = []
            for line in response.iter_lines():
                texts.append(line.decode())
                if len(texts) >= step.lines:
                    break
        else:
            texts = [response.content.decode()]
    return normalise(step, response.status_code, response.headers.get("Content-Type", ""), texts)


def cluster_version(server: ServerProcess) -> str:
    answer = requests.get(f"http://127.0.0.1:{server.client_port}/version", timeout=10)
    return str(answer.json()["etcdcluster"])


def transcript(base: str) -> list[tuple[str, tuple[int, str, Any]]]:
    """Every step's normalised answer, labelled by method and path."""
    return [(f"{step.method} {step.path} {step.body!r}", run_step(base, step)) for step in STEPS]


pytestmark = pytest.mark.interop


def test_every_gateway_path_answers_as_etcd(etcd_server: ServerProcess, etcdpy_server: ServerProcess) -> None:
    """The same requests to etcd 3.4 and etcdpy: the same statuses, content types and bodies (masked)."""
    for server in (etcd_server, etcdpy_server):  # a fresh member answers "not_decided" for a moment
        wait_until(lambda s=server: cluster_version(s) != "not_decided", 20, "no cluster version decided")
    expected = transcript(f"http://127.0.0.1:{etcd_server.client_port}")
    actual = transcript(f"http://127.0.0.1:{etcdpy_server.client_port}")
    differences = [
        f"{label}\n  etcd:   {want}\n  etcdpy: {got}"
        for (label, want), (_, got) in zip(expected, actual, strict=True)
        if want != got
    ]
    assert not differences, "\n".join(differences)
