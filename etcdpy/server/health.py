"""Health: what /health, /livez, /readyz and /metrics answer, as etcd serves them.

Each endpoint is an async function of the member and the request's query string that
returns an `Answer` (HTTP status, content type, body); the HTTP server mounts them on
the client URLs, ``--listen-client-http-urls`` and ``--listen-metrics-urls``, and runs them
on the member's event loop (the checks read the member's state there).

``/health`` is etcd 3.4's (etcdserver/api/etcdhttp/metrics.go): unhealthy while an alarm
not named in ``?exclude=`` is raised, while no leader is known, or when a linearizable read
does not complete within a second; the body is ``{"health":"true"}`` (200) or
``{"health":"false"}`` (503), with no reason, as 3.4 writes it.

``/livez`` and ``/readyz`` are etcd 3.6's (server/etcdserver/api/etcdhttp/health.go):
named checks run in turn, ``ok`` (200) when all pass, the list of ``[+]name ok`` /
``[-]name failed: reason`` lines with a 503 when one fails, the list before ``ok`` with
``?verbose``; ``?exclude=name`` skips a check (an unknown name is ignored), and
``/readyz/<name>`` runs one.  etcd 3.6 lists them in Go's map order, which changes from
call to call; here they come in a fixed order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import parse_qs

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.raft import NONE
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.metrics import CONTENT_TYPE, Metrics, render

__all__ = ["Answer", "endpoints", "health", "livez", "metrics", "readyz"]

TEXT = "text/plain; charset=utf-8"  # what Go's net/http writes for these bodies
HEALTH_READ_SECONDS = 1.0  # etcd 3.4 gives /health's quorum read one second


class Answer(NamedTuple):
    """An HTTP answer: status code, Content-Type, body."""

    status: int
    content_type: str
    body: bytes


Check = Callable[[EtcdServer], Awaitable[str | None]]  # None when it passes, else why it failed


def _query(query: str) -> dict[str, list[str]]:
    return parse_qs(query, keep_blank_values=True)


def _excluded(query: dict[str, list[str]]) -> set[str]:
    return {name for name in query.get("exclude", []) if name}


async def _own_range(server: EtcdServer, request: rpc_pb2.RangeRequest) -> None:
    """A read of the member's own: with auth on, it reads as root, as etcd's health reads pass auth."""
    read = server.range(request)
    await (server.auth.as_root(read) if server.auth is not None else read)


async def _linearizable_read(server: EtcdServer) -> None:
    """A read that goes through a quorum (ReadIndex), raising the EtcdError it fails with."""
    await _own_range(server, rpc_pb2.RangeRequest(key=b"health", keys_only=True, limit=1))


async def health(server: EtcdServer, query: str = "") -> Answer:
    """/health as etcd 3.4: alarms (except ``?exclude=``), a leader, a linearizable read within 1 s."""
    excluded = _excluded(_query(query))
    healthy = not any(rpc_pb2.AlarmType.Name(a.alarm) not in excluded for a in server.alarms())
    alarmed = not healthy  # etcd 3.4 answers an alarm before counting: neither counter moves
    if healthy and server.replication.leader_id == NONE:
        healthy = False
    if healthy:
        try:
            async with asyncio.timeout(HEALTH_READ_SECONDS):
                await _linearizable_read(server)
        except (TimeoutError, errors.EtcdError):
            healthy = False
    if not alarmed:
        (server.metrics.health_success if healthy else server.metrics.health_failures).inc()
    if healthy:
        return Answer(200, TEXT, b'{"health":"true"}')
    # Go's http.Error adds a newline to the body.
    return Answer(503, TEXT, json.dumps({"health": "false"}, separators=(",", ":")).encode() + b"\n")


async def _read_check(server: EtcdServer, *, serializable: bool) -> str | None:
    try:
        await _own_range(
            server, rpc_pb2.RangeRequest(key=b"health", keys_only=True, limit=1, serializable=serializable)
        )
    except errors.EtcdError as exc:
        return exc.text
    return None


async def serializable_read(server: EtcdServer) -> str | None:
    return await _read_check(server, serializable=True)


async def linearizable_read(server: EtcdServer) -> str | None:
    return await _read_check(server, serializable=False)


async def data_corruption(server: EtcdServer) -> str | None:
    return "alarm activated: CORRUPT" if server.alarms(rpc_pb2.CORRUPT) else None


async def non_learner(server: EtcdServer) -> str | None:
    return "not supported for learner" if server.is_learner() else None


LIVEZ: dict[str, Check] = {"serializable_read": serializable_read}
READYZ: dict[str, Check] = {
    "data_corruption": data_corruption,
    "serializable_read": serializable_read,
    "linearizable_read": linearizable_read,
    "non_learner": non_learner,
}


async def _run_checks(server: EtcdServer, checks: dict[str, Check], query: str, only: str | None) -> Answer:
    args = _query(query)
    if only is not None:
        if only not in checks:
            return Answer(404, TEXT, b"404 page not found\n")
        names = [only]
    else:
        excluded = _excluded(args)
        names = [name for name in checks if name not in excluded]
    lines: list[str] = []
    failed = False
    for name in names:
        reason = await checks[name](server)
        if reason is None:
            lines.append(f"[+]{name} ok\n")
        else:
            failed = True
            lines.append(f"[-]{name} failed: {reason}\n")
    report = "".join(lines)
    if failed:
        return Answer(503, TEXT, (report + "\n").encode())  # http.Error's newline, after the report's
    return Answer(200, TEXT, ((report if "verbose" in args else "") + "ok\n").encode())


async def livez(server: EtcdServer, query: str = "", check: str | None = None) -> Answer:
    """/livez (or /livez/<check>): is the process serving local reads (etcd 3.6)."""
    return await _run_checks(server, LIVEZ, query, check)


async def readyz(server: EtcdServer, query: str = "", check: str | None = None) -> Answer:
    """/readyz (or /readyz/<check>): no corruption, local and quorum reads, a voting member (etcd 3.6)."""
    return await _run_checks(server, READYZ, query, check)


async def metrics(registry: Metrics, query: str = "") -> Answer:
    """/metrics: the member's metrics in Prometheus' text format."""
    return Answer(200, CONTENT_TYPE, render(registry))


def endpoints(server: EtcdServer, registry: Metrics) -> dict[str, Callable[[str], Awaitable[Answer]]]:
    """Path -> handler of the query string, for every path these endpoints answer (checks' subpaths too)."""
    routes: dict[str, Callable[[str], Awaitable[Answer]]] = {
        "/health": lambda query: health(server, query),
        "/livez": lambda query: livez(server, query),
        "/readyz": lambda query: readyz(server, query),
        "/metrics": lambda query: metrics(registry, query),
    }
    for root, checks, run in (("/livez", LIVEZ, livez), ("/readyz", READYZ, readyz)):
        for name in checks:
            routes[f"{root}/{name}"] = _one_check(run, server, name)
    return routes


def _one_check(
    run: Callable[[EtcdServer, str, str | None], Awaitable[Answer]], server: EtcdServer, name: str
) -> Callable[[str], Awaitable[Answer]]:
    return lambda query: run(server, query, name)
