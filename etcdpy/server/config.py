"""Config: the server's settings as one frozen, validated value.

`etcdpy.server.main` reads etcd's flag names and ``ETCD_*`` environment
variables with click; this module owns what the values mean.  Two kinds of error
mirror etcd's two exit codes:

* a value that cannot be parsed at all (not a URL, a negative count, an unknown
  cluster state) is rejected by the parsers here with `ValueError`, which the
  command line turns into a usage error (exit 2, like etcd's flag parser);
* values that parse but do not fit together (heartbeat 0, election timeout under
  five heartbeats, this member missing from ``--initial-cluster``) raise
  `ConfigError` from `Config.validate` (exit 1, etcd's "error verifying flags").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from etcdpy.server import tls
from etcdpy.server.auth.tokens import AuthOptionError, token_provider
from etcdpy.server.tls import TLSInfo

DEFAULT_NAME = "default"
DEFAULT_CLIENT_URL = "http://localhost:2379"
DEFAULT_PEER_URL = "http://localhost:2380"
DEFAULT_CLUSTER_TOKEN = "etcd-cluster"
DEFAULT_MAX_REQUEST_BYTES = 1572864  # 1.5 MiB, etcd's embed.DefaultMaxRequestBytes
DEFAULT_MAX_TXN_OPS = 128
DEFAULT_SNAPSHOT_COUNT = 100000
DEFAULT_SNAPSHOT_CATCHUP_ENTRIES = 5000
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024  # etcd warns above this; we refuse, LevelDB needs headroom too
CLUSTER_STATES = ("new", "existing")
COMPACTION_MODES = ("periodic", "revision")
LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")
CLIENT_FRONT_MODES = ("process", "thread", "off")
PEER_PROTOCOLS = ("grpc", "stream")  # --experimental-peer-protocol: what raft messages travel on
# --experimental-client-workers auto: one worker per CPU this process may run on, at most
# MAX_AUTO_WORKERS; none on one CPU, where the member and its workers would only take turns.
AUTO_WORKERS = -1
MAX_AUTO_WORKERS = 4
METRICS_LEVELS = ("basic", "extensive")  # extensive adds the gRPC handling-time histograms

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(Exception):
    """Flag values that parse but cannot run together; the message names the flags."""


def parse_urls(text: str) -> tuple[str, ...]:
    """Split a comma-separated URL list and check each is http(s)://host:port."""
    urls = tuple(part.strip() for part in text.split(",") if part.strip())
    if not urls:
        raise ValueError("no URL given")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https: {url}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid port in URL: {url}") from None
        if not parts.hostname or port is None:
            raise ValueError(f"URL address does not have the form host:port: {url}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"URL must not have a path, query or fragment: {url}")
    return urls


def parse_initial_cluster(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``name=url,name=url`` into (name, url) pairs, one per URL."""
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name:
            raise ValueError(f"--initial-cluster entry must be name=url: {part!r}")
        pairs.extend((name, u) for u in parse_urls(url))
    if not pairs:
        raise ValueError("--initial-cluster is empty")
    return tuple(pairs)


def parse_worker_count(text: str) -> int:
    """A count of client workers: a number, or "auto" (`AUTO_WORKERS`, resolved by `Config.validate`)."""
    text = text.strip()
    if text == "auto":
        return AUTO_WORKERS
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f'{text!r} is neither "auto" nor a count of workers')
    return int(text)


def auto_client_workers(cpus: int) -> int:
    """What --experimental-client-workers auto gives on ``cpus`` CPUs."""
    return 0 if cpus < 2 else min(cpus, MAX_AUTO_WORKERS)


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("90s", "1h30m", "500ms"); a bare number means hours, as etcd."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return float(text) * 3600.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def listen_address(url: str) -> str:
    """The host:port a listener binds for `url`; ``localhost`` means the IPv4 loopback only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}"


@dataclass(frozen=True)
class Config:
    """Everything `etcdpy server` was told, after defaults; build with `Config.validate`."""

    name: str = DEFAULT_NAME
    data_dir: str = ""  # "" means "<name>.etcd", filled in by validate()
    listen_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    advertise_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    listen_client_http_urls: tuple[str, ...] = ()
    listen_metrics_urls: tuple[str, ...] = ()
    listen_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_cluster: tuple[tuple[str, str], ...] = ()  # () means "<name>=<initial-advertise-peer-urls>"
    initial_cluster_state: str = "new"
    initial_cluster_token: str = DEFAULT_CLUSTER_TOKEN
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = DEFAULT_SNAPSHOT_COUNT  # applied entries between raft snapshots
    snapshot_catchup_entries: int = DEFAULT_SNAPSHOT_CATCHUP_ENTRIES  # log kept below applied index
    quota_backend_bytes: int = 0  # 0 means etcd's default quota, 2 GiB
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"  # "0" disables auto compaction
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    max_concurrent_streams: int = 2**32 - 1
    auth_token: str = "simple"
    auth_token_ttl: int = 300
    bcrypt_cost: int = 10
    enable_grpc_gateway: bool = True
    pre_vote: bool = True
    strict_reconfig_check: bool = True
    max_learners: int = 1  # learners the cluster may have at once (etcd allows exactly one)
    auto_promote: bool = False  # a learner promotes itself once caught up (beyond etcd)
    # Checksums of the whole database read before serving; etcd's flag, on by default here (safety first).
    experimental_initial_corrupt_check: bool = True
    experimental_enable_lease_checkpoint: bool = False
    unsafe_no_fsync: bool = False
    experimental_grpc_threads: int = 0  # >0: serve gRPC from grpcio's thread pool of this size, not grpc.aio
    # Who owns the client URLs: the front's splicer as a process or as threads of the member (gRPC and
    # HTTP/1.1 on one port), or "off": grpcio binds them itself (gRPC only).
    experimental_client_front: str = "process"
    # Client gRPC served by this many worker processes beside the member (0: by the member itself); each
    # client front spreads its gRPC connections over workers of its own (etcdpy/server/workers).
    # AUTO_WORKERS ("auto") until `validate` resolves it: `auto_client_workers` of the CPUs this process
    # may use, none when the front is off or the member's grpcio runs threaded.  Off by default: a worker
    # is one more local hop per call (a lone client's linearizable read takes about a fifth longer) and
    # holds a second copy of each stream's gRPC state (docs/speed.md).
    experimental_client_workers: int = 0
    # What raft messages travel on between members: etcdpy's own peer stream (the peer URLs then answer
    # both) or the gRPC Send stream (grpcio owns the peer URLs); a stream member falls back to gRPC for
    # peers that do not answer the stream (docs/peer-protocol.md).
    experimental_peer_protocol: str = "stream"
    log_level: str = "info"
    # TLS, client side (etcd's flags; see etcdpy/server/tls.py and docs/tls.md)
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    client_crl_file: str = ""
    client_cert_allowed_hostname: str = ""
    auto_tls: bool = False
    cipher_suites: str = ""  # Go's names, comma-separated; both sides (grpc's setting is process-wide)
    tls_min_version: str = ""  # etcd 3.5's flags; only what grpcio negotiates anyway is accepted
    tls_max_version: str = ""
    # TLS, peer side
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    peer_auto_tls: bool = False
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    peer_crl_file: str = ""
    metrics: str = "basic"

    def validate(self) -> Config:
        """Return the config with derived defaults filled in, or raise `ConfigError`."""
        if self.heartbeat_interval_ms <= 0:
            raise ConfigError(f"--heartbeat-interval must be >0 (set to {self.heartbeat_interval_ms}ms)")
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{self.heartbeat_interval_ms}ms]"
            )
        if self.election_timeout_ms > 50000:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] is too long, set it below 50s"
            )
        if self.auto_compaction_mode not in COMPACTION_MODES:
            raise ConfigError(f'unknown auto-compaction-mode "{self.auto_compaction_mode}"')
        self.auto_compaction_interval()  # raises on a malformed retention
        if self.quota_backend_bytes > MAX_QUOTA_BYTES:
            raise ConfigError(f"--quota-backend-bytes {self.quota_backend_bytes} exceeds {MAX_QUOTA_BYTES}")
        if self.max_request_bytes <= 0:
            raise ConfigError("--max-request-bytes must be >0")
        if self.max_txn_ops <= 0:
            raise ConfigError("--max-txn-ops must be >0")
        if self.experimental_client_front not in CLIENT_FRONT_MODES:
            raise ConfigError(
                f'unknown --experimental-client-front "{self.experimental_client_front}",'
                f" use one of {', '.join(CLIENT_FRONT_MODES)}"
            )
        if self.experimental_client_workers > 0 and self.experimental_client_front == "off":
            raise ConfigError(
                "--experimental-client-workers needs the front on the client URLs"
                " (--experimental-client-front=process or thread)"
            )
        if self.experimental_peer_protocol not in PEER_PROTOCOLS:
            raise ConfigError(
                f'unknown --experimental-peer-protocol "{self.experimental_peer_protocol}",'
                f" use one of {', '.join(PEER_PROTOCOLS)}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f'unknown log level "{self.log_level}", use one of {", ".join(LOG_LEVELS)}')
        if self.metrics not in METRICS_LEVELS:
            raise ConfigError(f'unknown --metrics "{self.metrics}", use basic or extensive')
        if not self.name:
            raise ConfigError("--name must not be empty")
        try:  # before anything is written: a token provider that cannot be built fails the start
            token_provider(self.auth_token, float(self.auth_token_ttl))
        except AuthOptionError as exc:
            raise ConfigError(f"--auth-token {self.auth_token}: {exc}") from None
        cluster = self.initial_cluster or tuple((self.name, u) for u in self.initial_advertise_peer_urls)
        own = sorted(u for n, u in cluster if n == self.name)
        if self.initial_cluster_state == "new" and own != sorted(self.initial_advertise_peer_urls):
            raise ConfigError(
                f"--initial-cluster has {self.name}={','.join(own) or '(missing)'} but missing from "
                f"--initial-advertise-peer-urls={','.join(self.initial_advertise_peer_urls)}"
            )
        self._validate_tls()
        workers = self.experimental_client_workers
        if workers == AUTO_WORKERS:
            serving_elsewhere = self.experimental_client_front == "off" or self.experimental_grpc_threads > 0
            workers = 0 if serving_elsewhere else auto_client_workers(len(os.sched_getaffinity(0)))
        return replace(
            self,
            data_dir=self.data_dir or f"{self.name}.etcd",
            initial_cluster=cluster,
            experimental_client_workers=workers,
        )

    def _validate_tls(self) -> None:
        """etcd's checks of the TLS flags that need no file: an https URL needs a certificate or auto-tls."""
        for urls, info, kind in (
            (self.listen_client_urls, self.client_tls, "client"),
            (self.listen_peer_urls, self.peer_tls, "peer"),
        ):
            prefix = "" if kind == "client" else "peer-"
            for url in urls:
                if url.startswith("https:") and not info.has_cert and not info.auto_tls:
                    raise ConfigError(
                        f"TLS key/cert (--{prefix}cert-file, --{prefix}key-file) must be provided for"
                        f" {kind} url {url} with HTTPS scheme"
                    )
        if self.peer_cert_allowed_cn and self.peer_cert_allowed_hostname:
            raise ConfigError(
                f"AllowedCN and AllowedHostname are mutually exclusive (cn={self.peer_cert_allowed_cn!r},"
                f" hostname={self.peer_cert_allowed_hostname!r})"
            )
        if (self.client_crl_file or self.client_cert_allowed_hostname) and self.experimental_grpc_threads > 0:
            raise ConfigError(
                "--client-crl-file and --client-cert-allowed-hostname are not checked by the threaded server"
                " (--experimental-grpc-threads)"
            )
        try:
            self.cipher_suites_env()
            tls.check_versions(self.tls_min_version, self.tls_max_version)
        except tls.TLSError as exc:
            raise ConfigError(str(exc)) from None

    def cipher_suites_env(self) -> str:
        """``GRPC_SSL_CIPHER_SUITES`` for --cipher-suites ("" when none is given)."""
        return tls.cipher_suites_env([s.strip() for s in self.cipher_suites.split(",") if s.strip()])

    @property
    def client_tls(self) -> TLSInfo:
        """The client listeners' TLS settings (`tls.prepare` makes the auto-tls files at startup)."""
        return self._auto(
            TLSInfo(
                cert_file=self.cert_file,
                key_file=self.key_file,
                trusted_ca_file=self.trusted_ca_file,
                client_cert_auth=self.client_cert_auth,
                crl_file=self.client_crl_file,
                auto_tls=self.auto_tls,
                allowed_hostname=self.client_cert_allowed_hostname,
            ),
            "client",
        )

    @property
    def peer_tls(self) -> TLSInfo:
        """The peer listeners' and peer channels' TLS settings (auto-tls files: see `client_tls`)."""
        return self._auto(
            TLSInfo(
                cert_file=self.peer_cert_file,
                key_file=self.peer_key_file,
                trusted_ca_file=self.peer_trusted_ca_file,
                client_cert_auth=self.peer_client_cert_auth,
                crl_file=self.peer_crl_file,
                auto_tls=self.peer_auto_tls,
                allowed_cn=self.peer_cert_allowed_cn,
                allowed_hostname=self.peer_cert_allowed_hostname,
            ),
            "peer",
        )

    def _auto(self, info: TLSInfo, side: str) -> TLSInfo:
        """With auto-tls and no files given: etcd's self-signed files under <data-dir>/fixtures/<side>."""
        if not info.auto_tls or info.has_cert:
            return info
        return tls.self_signed_info(Path(self.data_dir or f"{self.name}.etcd") / "fixtures" / side, info)

    def auto_compaction_interval(self) -> float | int:
        """Retention as seconds (periodic mode) or revisions to keep (revision mode); 0 is off."""
        text = self.auto_compaction_retention
        if self.auto_compaction_mode == "revision":
            if not re.fullmatch(r"\d+", text.strip()):
                raise ConfigError(f"--auto-compaction-retention {text!r} must be a revision count")
            return int(text)
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ConfigError(f"--auto-compaction-retention: {exc}") from None

    @property
    def request_timeout(self) -> float:
        """Seconds a write may wait for its entry to apply: etcd's 5 s plus two election timeouts."""
        return 5.0 + 2 * self.election_timeout_ms / 1000

    @property
    def grpc_max_receive_bytes(self) -> int:
        """gRPC's receive limit: the request limit plus etcd's 512 KiB of headroom for envelopes."""
        return self.max_request_bytes + 512 * 1024
