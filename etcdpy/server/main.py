"""`etcdpy server`: etcd's flags and ETCD_* variables -> Config -> a running member.

The CLI package mounts `command` lazily (this module never imports etcdpy.cli).
Exit codes follow etcd: 2 for a flag that does not parse, 1 for flags that do
not fit together or a member that cannot start (data dir in use, corrupt data
dir, port in use), 0 after a clean shutdown on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click
import grpc

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.server import config as cfg
from etcdpy.server import health, tls
from etcdpy.server.etcdserver import run_auto_compaction
from etcdpy.server.grpc_options import grpc_server_options
from etcdpy.server.http.front import Front, bind
from etcdpy.server.http.gateway import Gateway
from etcdpy.server.http.http11 import App
from etcdpy.server.http.routes import client_routes, from_answers, metrics_routes
from etcdpy.server.member import Member, StartupError, open_member
from etcdpy.server.services import register_services, register_threaded_services
from etcdpy.server.services.grpc_metrics import AioInterceptor, GrpcMetrics, ThreadedInterceptor
from etcdpy.server.services.threaded import STREAM_HEADROOM
from etcdpy.server.storage.backend import Backend, BackendError
from etcdpy.server.storage.failure import classify, raise_alarm_through_peers
from etcdpy.server.workers.core import CallServer, WorkerPool, WorkerSettings

log = logging.getLogger("etcdpy.server")
SHUTDOWN_GRACE_SECONDS = 2.0  # in-flight requests may finish this long after SIGTERM

T = TypeVar("T")

# What does not parse exits 2 here (click's usage error), as etcd's flag parser does.
NON_NEGATIVE = click.IntRange(min=0)


class Parsed(click.ParamType[T]):
    """A flag value one of config's parsers reads; its ValueError is click's usage error (exit 2)."""

    def __init__(self, name: str, parse: Callable[[str], T]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):
            return cast(T, value)  # parsed already
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


URLS = Parsed("urls", cfg.parse_urls)
# (flag, Config field, click type, help); defaults come from Config itself.
FLAGS: list[tuple[str, str, Any, str]] = [
    ("--name", "name", str, "Human-readable name for this member."),
    ("--data-dir", "data_dir", str, "Path to the data directory. [default: ${name}.etcd]"),
    ("--listen-client-urls", "listen_client_urls", URLS, "URLs to listen on for client gRPC traffic."),
    ("--advertise-client-urls", "advertise_client_urls", URLS, "Client URLs this member advertises."),
    (
        "--listen-client-http-urls",
        "listen_client_http_urls",
        URLS,
        "URLs to listen on for HTTP only (JSON gateway, /version, /health, /metrics); the client URLs"
        " answer HTTP/1.1 too.",
    ),
    ("--listen-metrics-urls", "listen_metrics_urls", URLS, "URLs to serve /metrics and /health alone on."),
    ("--listen-peer-urls", "listen_peer_urls", URLS, "URLs to listen on for peer traffic."),
    (
        "--initial-advertise-peer-urls",
        "initial_advertise_peer_urls",
        URLS,
        "Peer URLs advertised to the cluster.",
    ),
    (
        "--initial-cluster",
        "initial_cluster",
        Parsed("name=url,...", cfg.parse_initial_cluster),
        "Initial cluster configuration (name=url,...).",
    ),
    (
        "--initial-cluster-state",
        "initial_cluster_state",
        click.Choice(cfg.CLUSTER_STATES),
        "new or existing.",
    ),
    (
        "--initial-cluster-token",
        "initial_cluster_token",
        str,
        "Token that makes cluster and member IDs unique.",
    ),
    ("--heartbeat-interval", "heartbeat_interval_ms", NON_NEGATIVE, "Time (in ms) of a heartbeat interval."),
    ("--election-timeout", "election_timeout_ms", NON_NEGATIVE, "Time (in ms) for an election to time out."),
    ("--snapshot-count", "snapshot_count", NON_NEGATIVE, "Applied entries between raft snapshots."),
    (
        "--snapshot-catchup-entries",
        "snapshot_catchup_entries",
        NON_NEGATIVE,
        "Entries kept below the applied index for slow followers.",
    ),
    ("--quota-backend-bytes", "quota_backend_bytes", NON_NEGATIVE, "Backend size quota (0 = 2 GiB)."),
    ("--auto-compaction-mode", "auto_compaction_mode", str, "periodic or revision."),
    (
        "--auto-compaction-retention",
        "auto_compaction_retention",
        str,
        "Auto compaction retention: a duration (periodic; a bare number means hours) or a revision count.",
    ),
    (
        "--max-request-bytes",
        "max_request_bytes",
        NON_NEGATIVE,
        "Largest request a client may send, in bytes.",
    ),
    ("--max-txn-ops", "max_txn_ops", NON_NEGATIVE, "Most operations allowed in one txn."),
    ("--max-concurrent-streams", "max_concurrent_streams", NON_NEGATIVE, "Concurrent streams per client."),
    ("--auth-token", "auth_token", str, "Auth token type: simple or jwt,..."),
    ("--auth-token-ttl", "auth_token_ttl", NON_NEGATIVE, "Simple token lifetime in seconds."),
    ("--bcrypt-cost", "bcrypt_cost", NON_NEGATIVE, "bcrypt cost for password hashing."),
    (
        "--enable-grpc-gateway",
        "enable_grpc_gateway",
        click.BOOL,
        "Serve the JSON gateway (/v3/...) on the client URLs and --listen-client-http-urls.",
    ),
    ("--pre-vote", "pre_vote", click.BOOL, "Raft pre-vote."),
    ("--strict-reconfig-check", "strict_reconfig_check", click.BOOL, "Reject unsafe reconfigurations."),
    ("--max-learners", "max_learners", NON_NEGATIVE, "Most learner members the cluster may have at once."),
    (
        "--auto-promote",
        "auto_promote",
        click.BOOL,
        "A learner promotes itself to a voting member once caught up with the leader.",
    ),
    (
        "--experimental-enable-lease-checkpoint",
        "experimental_enable_lease_checkpoint",
        click.BOOL,
        "Checkpoint lease TTLs through the log.",
    ),
    (
        "--experimental-initial-corrupt-check",
        "experimental_initial_corrupt_check",
        click.BOOL,
        "Read every record with its checksum before serving, refusing to start on a damaged data dir"
        " (default true, unlike etcd: costs about a second per million records at startup).",
    ),
    (
        "--unsafe-no-fsync",
        "unsafe_no_fsync",
        click.BOOL,
        "Do not fsync the log (unsafe: loses data on power loss).",
    ),
    (
        "--experimental-grpc-threads",
        "experimental_grpc_threads",
        NON_NEGATIVE,
        "Serve gRPC from grpcio's threaded server with this many threads instead of grpc.aio (0): less CPU"
        " per call and lower tail latency under load; each call holds a thread while it runs.",
    ),
    (
        "--experimental-client-front",
        "experimental_client_front",
        click.Choice(cfg.CLIENT_FRONT_MODES),
        "Who owns the client URLs: the front, which answers gRPC and HTTP/1.1 on one port, as a process of"
        " its own (process, the default) or as threads of the member (thread); off: grpcio binds them"
        " itself, gRPC only, one loopback hop less per request.",
    ),
    (
        "--experimental-client-workers",
        "experimental_client_workers",
        Parsed("auto|N", cfg.parse_worker_count),
        "Serve client gRPC from this many worker processes beside the member (0: the member serves it):"
        " the workers do gRPC's own work and forward each call to the member, so serving grows past"
        " one core (https client URLs too: the workers serve TLS with the same certificates); each call"
        " takes one local hop more. auto: one per CPU the member may run on, at most 4; none on one CPU,"
        " with the front off or with --experimental-grpc-threads.",
    ),
    (
        "--experimental-peer-protocol",
        "experimental_peer_protocol",
        click.Choice(cfg.PEER_PROTOCOLS),
        "What raft messages travel on between members: stream (the default: etcdpy's own length-prefixed"
        " frames over HTTP/1.1 on the peer URLs, which then answer gRPC too) or grpc (the Peer service's"
        " Send stream, grpcio owning the peer URLs); a stream member uses gRPC to peers that do not answer"
        " the stream.",
    ),
    ("--log-level", "log_level", click.Choice(cfg.LOG_LEVELS), "debug, info, warn, error, panic or fatal."),
    ("--cert-file", "cert_file", str, "Path to the client server TLS cert file."),
    ("--key-file", "key_file", str, "Path to the client server TLS key file."),
    (
        "--client-cert-auth",
        "client_cert_auth",
        click.BOOL,
        "Enable client cert authentication (a verified certificate's common name is the user, no token).",
    ),
    ("--client-crl-file", "client_crl_file", str, "Path to the client certificate revocation list file."),
    (
        "--client-cert-allowed-hostname",
        "client_cert_allowed_hostname",
        str,
        "Allowed TLS hostname for client cert authentication.",
    ),
    ("--trusted-ca-file", "trusted_ca_file", str, "Path to the client server TLS trusted CA cert file."),
    ("--auto-tls", "auto_tls", click.BOOL, "Client TLS using generated certificates."),
    ("--peer-cert-file", "peer_cert_file", str, "Path to the peer server TLS cert file."),
    ("--peer-key-file", "peer_key_file", str, "Path to the peer server TLS key file."),
    (
        "--peer-client-cert-auth",
        "peer_client_cert_auth",
        click.BOOL,
        "Enable peer client cert authentication.",
    ),
    ("--peer-trusted-ca-file", "peer_trusted_ca_file", str, "Path to the peer server TLS trusted CA file."),
    ("--peer-auto-tls", "peer_auto_tls", click.BOOL, "Peer TLS using generated certificates."),
    ("--peer-crl-file", "peer_crl_file", str, "Path to the peer certificate revocation list file."),
    ("--peer-cert-allowed-cn", "peer_cert_allowed_cn", str, "Allowed CN for inter peer authentication."),
    (
        "--peer-cert-allowed-hostname",
        "peer_cert_allowed_hostname",
        str,
        "Allowed TLS hostname for inter peer authentication.",
    ),
    (
        "--cipher-suites",
        "cipher_suites",
        str,
        "Comma-separated list of supported TLS cipher suites between client/server and peers (Go's names;"
        " empty: grpc's defaults). TLS 1.3 suites are not configurable.",
    ),
    (
        "--tls-min-version",
        "tls_min_version",
        str,
        "Minimum TLS version (etcd 3.5). grpcio always negotiates TLS1.2 to TLS1.3: only TLS1.2 is accepted.",
    ),
    (
        "--tls-max-version",
        "tls_max_version",
        str,
        "Maximum TLS version (etcd 3.5). grpcio always negotiates TLS1.2 to TLS1.3: only TLS1.3 is accepted.",
    ),
    (
        "--metrics",
        "metrics",
        str,
        "Set level of detail for exported metrics, specify 'extensive' to include histogram metrics.",
    ),
]


def env_var(flag: str) -> str:
    """ETCD_ plus the flag in upper case with dashes as underscores (etcd's rule)."""
    return "ETCD_" + flag.lstrip("-").upper().replace("-", "_")


def _option(flag: str, field_name: str, kind: Any, help_text: str) -> click.Option:
    extra: dict[str, Any] = {}
    if kind is click.BOOL:
        extra = {"is_flag": False, "flag_value": True}  # "--pre-vote" alone or "--pre-vote=false", as Go
    return click.Option(
        [flag, field_name], type=kind, default=None, envvar=env_var(flag), help=help_text, **extra
    )


def _warn_shadowed_env(ctx: click.Context) -> None:
    for flag, field_name, _kind, _help in FLAGS:
        source = ctx.get_parameter_source(field_name)
        if source is click.core.ParameterSource.COMMANDLINE and env_var(flag) in os.environ:
            click.echo(f"warning: {env_var(flag)} is ignored: {flag} was given on the command line", err=True)


@click.pass_context
def _run(ctx: click.Context, /, **params: Any) -> None:
    _warn_shadowed_env(ctx)
    given = {name: value for name, value in params.items() if value is not None}
    try:
        config = cfg.Config(**given).validate()
    except cfg.ConfigError as exc:
        click.echo(f"etcdpy: error verifying flags, {exc}. See 'etcdpy server --help'.", err=True)
        sys.exit(1)
    sys.exit(serve(config))


class ServerCommand(click.Command):
    """A command whose unparsable flags exit 2 (etcd's flag parser), whatever group mounts it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            err.show()
            sys.exit(2)


command = ServerCommand(
    "server",
    callback=_run,
    params=[_option(*flag) for flag in FLAGS],
    help=(
        "Run an etcdpy member. With no flags: a one-member cluster serving gRPC on 127.0.0.1:2379, "
        "data in ./default.etcd. Every flag can also be set as ETCD_<FLAG> (e.g. ETCD_DATA_DIR); a flag "
        "given on the command line wins. The client URLs answer gRPC and HTTP/1.1 (the JSON gateway, "
        "/version, /health, /metrics) on the same port, as etcd's do."
    ),
    short_help="Run an etcdpy member.",
)


def serve(config: cfg.Config) -> int:
    """Run the member until SIGTERM/SIGINT; return the process exit code."""
    level = {"warn": "WARNING", "panic": "CRITICAL", "fatal": "CRITICAL"}.get(
        config.log_level, config.log_level
    )
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _restart_for_cipher_suites(config.cipher_suites_env())
    try:
        tls.prepare(config.client_tls, config.listen_client_urls)
        tls.prepare(config.peer_tls, config.listen_peer_urls, "peer-")
    except tls.TLSError as exc:
        click.echo(f"etcdpy: {exc}", err=True)
        return 1
    try:
        return asyncio.run(_serve(config))
    except (BackendError, StartupError) as exc:
        click.echo(f"etcdpy: {exc}", err=True)
        return 1


def _restart_for_cipher_suites(wanted: str) -> None:
    """Run this command again with grpc's cipher suite setting, which grpc reads once, when it starts."""
    if wanted and os.environ.get(tls.CIPHER_SUITES_ENV) != wanted:
        os.environ[tls.CIPHER_SUITES_ENV] = wanted
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _credentials(config: cfg.Config, url: str, side: str) -> grpc.ServerCredentials | None:
    """The TLS credentials for an https:// URL of `side` ("client" or "peer"); None for http://."""
    if not url.startswith("https:"):
        return None
    return tls.server_credentials(config.client_tls if side == "client" else config.peer_tls)


Address = tuple[str, "grpc.ServerCredentials | None"]  # what grpcio binds, and its TLS credentials


def _bind(grpc_server: grpc.aio.Server | grpc.Server, bound: Address) -> None:
    address, credentials = bound
    try:
        if credentials is None:
            grpc_server.add_insecure_port(address)
        else:
            grpc_server.add_secure_port(address, credentials)
    except RuntimeError:
        raise StartupError(f"listen tcp {address}: bind: address already in use") from None


def _bind_http(urls: tuple[str, ...]) -> list[socket.socket]:
    """Listening sockets for the front on `urls`, with etcd's error when a port is taken."""
    listeners: list[socket.socket] = []
    try:
        for url in urls:
            address = cfg.listen_address(url)
            host, _, port = address.rpartition(":")
            try:
                listeners.append(bind((host.strip("[]"), int(port))))
            except OSError as exc:
                raise StartupError(
                    f"listen tcp {address}: bind: {(exc.strerror or str(exc)).lower()}"
                ) from None
    except StartupError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


Stopper = Callable[[], Awaitable[None]]


MAX_UNIX_PATH_BYTES = 108  # sockaddr_un's sun_path, its NUL included


async def _start_grpc(
    config: cfg.Config, member: Member, addresses: list[Address], grpc_metrics: GrpcMetrics
) -> Stopper:
    """Serve the services with grpcio on `addresses`; return the coroutine function that stops serving."""
    options = grpc_server_options(config.grpc_max_receive_bytes, config.max_concurrent_streams)
    loop = asyncio.get_running_loop()
    if config.experimental_grpc_threads > 0:
        # Every open stream (watch, keep-alive) holds a pool thread for its whole life: room for them.
        pool = ThreadPoolExecutor(
            config.experimental_grpc_threads + STREAM_HEADROOM, thread_name_prefix="etcdpy-grpc"
        )
        threaded = grpc.server(pool, options=options, interceptors=[ThreadedInterceptor(grpc_metrics)])
        register_threaded_services(threaded, member.services, loop)
        for address in addresses:
            _bind(threaded, address)
        threaded.start()

        async def stop_threaded() -> None:
            # In-flight calls wait on the loop, so the loop must keep running while they finish.
            await loop.run_in_executor(None, threaded.stop(SHUTDOWN_GRACE_SECONDS).wait)
            pool.shutdown(wait=False)

        return stop_threaded
    guard = tls.CertificateGuard.for_info("client", config.client_tls)
    interceptors: list[grpc.aio.ServerInterceptor] = [AioInterceptor(grpc_metrics)]  # type: ignore[type-arg]
    if guard is not None:
        interceptors.append(guard)
    aio = grpc.aio.server(options=options, interceptors=interceptors)
    await register_services(aio, member.services)
    for address in addresses:
        _bind(aio, address)
    await aio.start()

    async def stop_aio() -> None:
        await aio.stop(SHUTDOWN_GRACE_SECONDS)

    return stop_aio


@dataclass(frozen=True)
class PrivateSocket:
    """Where grpcio listens behind the front: ``<data-dir>/grpc.sock``, or a temp dir of its own when
    that path is longer than a Unix socket's may be (108 bytes with its terminating NUL)."""

    path: str
    own_dir: str | None  # the temp dir to remove, if the socket is not in the data dir

    @classmethod
    def for_data_dir(cls, data_dir: str, name: str = "grpc.sock") -> PrivateSocket:
        path = os.path.abspath(os.path.join(data_dir, name))
        if len(os.fsencode(path)) < MAX_UNIX_PATH_BYTES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a member that was killed left it; the data dir's lock is ours now
            return cls(path, None)
        own_dir = tempfile.mkdtemp(prefix="etcdpy-grpc-")
        return cls(os.path.join(own_dir, name), own_dir)

    def remove(self) -> None:
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def http_paths(member: Member) -> dict[str, App]:
    """The HTTP paths served beside /version and the gateway: /health, /livez, /readyz, /metrics."""
    return from_answers(health.endpoints(member.server, member.metrics))


def _by_scheme(urls: tuple[str, ...]) -> list[tuple[tuple[str, ...], bool]]:
    """`urls` as (the http ones, False) and (the https ones, True), leaving out an empty group."""
    groups = [
        (tuple(u for u in urls if u.startswith("https:") == secure), secure) for secure in (False, True)
    ]
    return [(group, secure) for group, secure in groups if group]


async def _start_clients(config: cfg.Config, member: Member) -> Stopper:
    """Serve clients: the front on the client URLs (gRPC spliced to grpcio on a private Unix socket,
    HTTP/1.1 itself), HTTP-only fronts, metrics fronts; return the coroutine function that stops them.

    With --experimental-client-front=off grpcio binds the client URLs itself.  With
    --experimental-client-workers each front spreads gRPC connections over its worker processes,
    which forward every call to the member's calls channel (etcdpy/server/workers).
    """
    loop = asyncio.get_running_loop()
    gateway = (
        Gateway(member.services, max_receive_bytes=config.grpc_max_receive_bytes)
        if config.enable_grpc_gateway
        else None
    )
    paths = http_paths(member)
    client_app = client_routes(paths, gateway, lambda: member.replication.cluster_version)
    metrics_app = metrics_routes(
        {path: app for path, app in paths.items() if path in ("/metrics", "/health")}
    )
    fronts: list[Front] = []
    sockets: list[PrivateSocket] = []
    stop_grpc: Stopper | None = None
    grpc_metrics = GrpcMetrics(member.metrics)
    calls: CallServer | None = None
    pools: list[WorkerPool] = []

    def ssl_context(secure: bool) -> ssl.SSLContext | None:
        return tls.server_ssl_context(config.client_tls) if secure else None

    try:
        grpc_addresses: list[Address] = []
        if config.experimental_client_front != "off":
            # One front per scheme: an https front peeks ALPN and splices h2 to a grpcio socket speaking
            # TLS with the same certificates (the session stays end to end), and ends TLS for HTTP/1.1.
            for urls, secure in _by_scheme(config.listen_client_urls):
                private = PrivateSocket.for_data_dir(config.data_dir, "grpcs.sock" if secure else "grpc.sock")
                sockets.append(private)
                grpc_addresses.append((f"unix:{private.path}", _credentials(config, urls[0], "client")))
                worker_paths: list[str] = []
                if config.experimental_client_workers > 0:
                    if calls is None:
                        calls = await _start_call_server(config, member, grpc_metrics, sockets)
                    pool = _worker_pool(config, calls, private, secure, sockets)
                    pools.append(pool)
                    worker_paths = pool.socket_paths
                fronts.append(
                    Front(
                        _bind_http(urls),
                        app=client_app,
                        loop=loop,
                        grpc_path=private.path,
                        mode=config.experimental_client_front,
                        ssl_context=ssl_context(secure),
                        worker_paths=worker_paths,
                    )
                )
        else:
            grpc_addresses = [
                (cfg.listen_address(url), _credentials(config, url, "client"))
                for url in config.listen_client_urls
            ]
        for http_urls, app in (
            (config.listen_client_http_urls, client_app),
            (config.listen_metrics_urls, metrics_app),
        ):
            for urls, secure in _by_scheme(http_urls):
                fronts.append(
                    Front(
                        _bind_http(urls), app=app, loop=loop, grpc_path=None, ssl_context=ssl_context(secure)
                    )
                )
        stop_grpc = await _start_grpc(config, member, grpc_addresses, grpc_metrics)
    except BaseException:
        if calls is not None:
            await calls.close()
        await _stop_fronts(fronts, sockets)
        raise
    for pool in pools:
        pool.start()  # they proxy grpc.health.v1 to grpcio, which serves now
    for front in reversed(fronts):  # the client URLs last: once they answer, every listener does
        front.start()

    async def stop_clients() -> None:
        # New connections first, then the workers and grpcio with their grace for calls in flight (a
        # worker's forwarded calls need the core's channel until it has stopped), then what is still
        # spliced.
        for front in fronts:
            front.stop_accepting()
        await asyncio.gather(*(pool.stop(SHUTDOWN_GRACE_SECONDS) for pool in pools))
        assert stop_grpc is not None
        await stop_grpc()
        if calls is not None:
            await calls.close()
        await _stop_fronts(fronts, sockets)

    return stop_clients


async def _start_call_server(
    config: cfg.Config, member: Member, grpc_metrics: GrpcMetrics, sockets: list[PrivateSocket]
) -> CallServer:
    """The calls channel of the client workers, on `<data-dir>/workers.sock` (removed with `sockets`)."""
    channel = PrivateSocket.for_data_dir(config.data_dir, "workers.sock")
    sockets.append(channel)
    calls = CallServer(member.services, grpc_metrics)
    await calls.start(channel.path)
    return calls


def _worker_pool(
    config: cfg.Config,
    calls: CallServer,
    grpc_socket: PrivateSocket,
    secure: bool,
    sockets: list[PrivateSocket],
) -> WorkerPool:
    """The client workers of one front (not started yet): `grpc-worker-<i>.sock`, or `grpcs-` for https
    (those serve TLS with the client certificates); their sockets join `sockets`."""
    prefix = "grpcs" if secure else "grpc"
    worker_sockets = [
        PrivateSocket.for_data_dir(config.data_dir, f"{prefix}-worker-{index}.sock")
        for index in range(config.experimental_client_workers)
    ]
    sockets.extend(worker_sockets)
    settings = WorkerSettings(
        channel_path=calls.path,
        grpc_path=grpc_socket.path,
        max_receive_bytes=config.grpc_max_receive_bytes,
        max_concurrent_streams=config.max_concurrent_streams,
        tls=config.client_tls if secure else None,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    )
    return WorkerPool(settings, [s.path for s in worker_sockets])


async def _start_peer(config: cfg.Config, member: Member) -> Stopper:
    """Serve the Peer service (raft messages, snapshots, members) on every peer URL; return its stopper.

    With --experimental-peer-protocol=stream a front owns the peer URLs: gRPC (HTTP/2, or ALPN h2) is
    spliced to grpcio on a private Unix socket, and anything else is a peer stream (peerstream.py),
    served on the member's loop.  With grpc, grpcio binds the peer URLs itself.
    """
    guard = tls.CertificateGuard.for_info("peer", config.peer_tls)
    peer = grpc.aio.server(
        interceptors=[guard] if guard is not None else None,
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
        ],
    )
    member.replication.register(peer, promote=member.member_ops.promote)
    fronts: list[Front] = []
    sockets: list[PrivateSocket] = []
    try:
        if config.experimental_peer_protocol == "stream":
            loop = asyncio.get_running_loop()
            for urls, secure in _by_scheme(config.listen_peer_urls):
                private = PrivateSocket.for_data_dir(config.data_dir, "peers.sock" if secure else "peer.sock")
                sockets.append(private)
                _bind(peer, (f"unix:{private.path}", _credentials(config, urls[0], "peer")))
                fronts.append(
                    Front(
                        _bind_http(urls),
                        handler=member.replication.transport.serve_stream,
                        loop=loop,
                        grpc_path=private.path,
                        mode="thread",
                        ssl_context=tls.server_ssl_context(config.peer_tls) if secure else None,
                    )
                )
        else:
            for url in config.listen_peer_urls:
                _bind(peer, (cfg.listen_address(url), _credentials(config, url, "peer")))
        await peer.start()
    except BaseException:
        await _stop_fronts(fronts, sockets)
        raise
    for front in fronts:
        front.start()

    async def stop_peer() -> None:
        for front in fronts:
            front.stop_accepting()
        await peer.stop(0)
        await _stop_fronts(fronts, sockets)

    return stop_peer


async def _stop_fronts(fronts: list[Front], sockets: list[PrivateSocket]) -> None:
    """Stop the fronts (what they still splice ends) and remove grpcio's private sockets behind them."""
    for front in fronts:
        await front.stop()
    for private in sockets:
        private.remove()


async def _write_path_failed(config: cfg.Config, member: Member, exc: BaseException) -> int:
    """Report a failed write path (exit 1); a full disk or corruption raises its alarm through the peers."""
    known = classify(exc, config.data_dir)
    if known is None:
        log.critical("write path failed; stopping", exc_info=exc)
        return 1
    log.critical("%s", known.message, exc_info=exc)
    name = rpc_pb2.AlarmType.Name(known.alarm)
    url = await raise_alarm_through_peers(member.cluster, known.alarm, tls.client_dialer(config.client_tls))
    told = f"the {name} alarm was raised through {url}" if url else f"no other member raised the {name} alarm"
    click.echo(f"etcdpy: {known.message} ({told})", err=True)
    return 1


async def _serve(config: cfg.Config) -> int:
    backend = Backend(config.data_dir)
    member: Member | None = None
    try:
        if config.experimental_initial_corrupt_check:
            started = time.monotonic()
            records = backend.verify()  # a damaged table file refuses to start, before anything is served
            log.info("checked the checksums of %d records in %.2fs", records, time.monotonic() - started)
        member = await open_member(config, backend)
        stop_peer = await _start_peer(config, member)
        # Everything allocated so far (modules, descriptors, the store's caches) lives as long as the
        # process: keeping it out of the collector shortens every full collection under load.
        gc.freeze()
        replicating = member.start()
        server = member.server
        compactor = asyncio.create_task(
            run_auto_compaction(server, config.auto_compaction_mode, config.auto_compaction_interval())
        )
        stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        signal_task = asyncio.create_task(stop_requested.wait())
        removed_task = asyncio.create_task(member.replication.removed_event.wait())
        stopping = [replicating, signal_task, removed_task]
        # Like etcd, serve clients only once this member has published itself through the log.
        published_task = asyncio.create_task(server.published.wait())
        await asyncio.wait([published_task, *stopping], return_when=asyncio.FIRST_COMPLETED)
        published_task.cancel()
        stop_clients: Stopper | None = None
        if server.published.is_set() and not any(t.done() for t in stopping):
            stop_clients = await _start_clients(config, member)
            cluster = member.cluster
            # Each URL scheme's front has a pool of its own (see _start_clients).
            workers = config.experimental_client_workers * len(_by_scheme(config.listen_client_urls))
            click.echo(
                f"etcdpy: member {cluster.local_id:x} ({config.name}) of cluster {cluster.cluster_id:x}"
                f" serving client requests on {', '.join(config.listen_client_urls)}"
                + (f" (gRPC served by {workers} client worker processes)" if workers else ""),
                err=True,
            )
            await asyncio.wait(stopping, return_when=asyncio.FIRST_COMPLETED)
        # The order of stopping: the waits above, the compactor, the client listeners (requests in
        # flight still reach the log), the member (see Member.stop), then the peer listener.
        signal_task.cancel()
        removed_task.cancel()
        compactor.cancel()
        if stop_clients is not None:
            await stop_clients()
        await member.stop()
        await stop_peer()
        if member.replication.removed:
            click.echo("etcdpy: the member has been permanently removed from the cluster", err=True)
            return 0
        failure = None if replicating.cancelled() else replicating.exception()
        if failure is not None:
            return await _write_path_failed(config, member, failure)
        click.echo("etcdpy: stopped", err=True)
        return 0
    finally:
        if member is not None:
            await member.stop()
        backend.close()
