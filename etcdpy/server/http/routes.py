"""What each kind of HTTP listener answers, as etcd 3.4 does on its client and metrics URLs.

`client_routes` is the client URL's (and ``--listen-client-http-urls``'): /version, the paths other
parts of the member add (/health, /metrics, /livez, /readyz), and the JSON gateway under /v3/,
/v3beta/ and /v3alpha/ unless ``--enable-grpc-gateway=false``.  Every answer carries etcd's CORS
headers (its default ``--cors=*``) and OPTIONS is answered at once, as etcd's access controller does.
`metrics_routes` is ``--listen-metrics-urls``': the given paths alone, no CORS.  Anything else is
Go's ``404 page not found``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from etcdpy.server.http.gateway import Gateway
from etcdpy.server.http.http11 import App, Reply, Request, Response, plain_error
from etcdpy.version import ETCD_RELEASE

CORS_HEADERS = [
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
]
NOT_DECIDED = "not_decided"  # etcd's cluster version before the members agreed on one


class Answer(Protocol):
    """What the health and metrics endpoints answer (etcdpy.server.health.Answer)."""

    @property
    def status(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def body(self) -> bytes: ...


def from_answers(endpoints: Mapping[str, Callable[[str], Awaitable[Answer]]]) -> dict[str, App]:
    """HTTP handlers for endpoints that take the query string; GET only (etcd's /health), but /metrics."""

    def handler(endpoint: Callable[[str], Awaitable[Answer]], any_method: bool) -> App:
        async def answer(request: Request) -> Reply:
            if not any_method and request.method != "GET":
                response = plain_error(405, "Method Not Allowed")
                response.headers.insert(0, ("Allow", "GET"))
                return response
            answered = await endpoint(request.query)
            return Response(answered.status, [("Content-Type", answered.content_type)], answered.body)

        return answer

    return {path: handler(endpoint, path == "/metrics") for path, endpoint in endpoints.items()}


def version_handler(cluster_version: Callable[[], str]) -> App:
    """/version: etcd's ``{"etcdserver": ..., "etcdcluster": ...}``; GET only."""

    async def version(request: Request) -> Reply:
        if request.method != "GET":
            response = plain_error(405, "Method Not Allowed")
            response.headers.insert(0, ("Allow", "GET"))
            return response
        body = {"etcdserver": ETCD_RELEASE, "etcdcluster": cluster_version() or NOT_DECIDED}
        return Response(
            200, [("Content-Type", "application/json")], json.dumps(body, separators=(",", ":")).encode()
        )

    return version


class Router:
    """Exact paths first, then the gateway's prefixes, then 404; `cors` adds etcd's CORS headers."""

    def __init__(self, paths: Mapping[str, App], gateway: Gateway | None, *, cors: bool) -> None:
        self.paths = dict(paths)
        self.gateway = gateway
        self.cors = cors

    async def __call__(self, request: Request) -> Reply:
        handler = self.paths.get(request.path)
        if self.cors and request.method == "OPTIONS":
            reply: Reply = Response(200, [])
        elif handler is not None:
            reply = await handler(request)
        elif self.gateway is not None and self.gateway.serves(request.path):
            reply = await self.gateway(request)
        else:
            reply = plain_error(404, "404 page not found")
        if self.cors:
            reply.headers[:0] = CORS_HEADERS
        return reply


def client_routes(
    extra: Mapping[str, App], gateway: Gateway | None, cluster_version: Callable[[], str]
) -> Router:
    """The client URL's HTTP side: /version, `extra` (health, metrics), the gateway."""
    return Router({"/version": version_handler(cluster_version), **extra}, gateway, cors=True)


def metrics_routes(extra: Mapping[str, App]) -> Router:
    """A ``--listen-metrics-urls`` listener: `extra` (/metrics and /health) alone."""
    return Router(extra, None, cors=False)
