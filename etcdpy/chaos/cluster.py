"""ChaosCluster: real `etcdpy server` processes whose every peer link crosses its own proxy.

Member j reaches member i through ``links[j, i]`` (a `LinkProxy`), set up through
``ETCDPY_PEER_PROXIES``, so a partition or a delay is chosen per directed link.
Members keep their ports, names and data dirs across restarts; a replaced member
comes back with the same name and URLs but a new member ID and an empty data dir.
Every data dir and log lives under the cluster's root folder, and `stop` kills every
process the cluster started (call it in a ``finally``).

With ``tls=True`` every link uses TLS: client and peer URLs are ``https://``, client
and peer certificates are required, and one self-signed certificate for 127.0.0.1
(made in ``<root>/tls``) is every member's server, peer and client certificate and
the CA that verifies them; the harness's clients present it too (`client_tls`).  The
proxies pass the TLS bytes through unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etcdpy.chaos.proxy import OPEN, LinkFault, LinkProxy, ProxyHub
from etcdpy.client import Client, TLSConfig
from etcdpy.server.tls import make_self_signed

HEARTBEAT_MS = 50
ELECTION_MS = 500
TOKEN = "etcdpy-chaos"


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_START = _ephemeral_start()
_ports = random.Random()  # ports, not test behaviour: deliberately not seeded
_taken: set[int] = set()
# Ports handed out by any process on this machine: a POSIX lock on byte <port> of this file, which the
# kernel drops when the process holding it ends.  Without it two processes (pytest's workers, a bench
# beside them) could pick the same port while the member it belongs to is down for a restart.
# One file per user (another user's would not open for writing).
PORT_REGISTRY = Path(tempfile.gettempdir()) / f"etcdpy-ports-{os.getuid()}.lock"
_registry: list[int] = []  # the open descriptor the locks are held through (closing any would drop them)


def claim_port(port: int) -> bool:
    """Claim ``port`` for this process among every process on the machine; False if another holds it."""
    if not _registry:
        _registry.append(os.open(PORT_REGISTRY, os.O_RDWR | os.O_CREAT, 0o600))
    try:
        fcntl.lockf(_registry[0], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    return True


def release_port(port: int) -> None:
    """Let go of this process's claim on ``port`` (ports free_port handed out stay claimed)."""
    if _registry:
        fcntl.lockf(_registry[0], fcntl.LOCK_UN, 1, port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range.

    A member's ports must stay free until it binds them, and again at every restart:
    ports handed out by the kernel for port 0 or as the source port of an outgoing
    connection (the proxies', the clients') never come from below that range, and a port
    is handed out once per machine while the process it went to lives (`claim_port`).
    """
    for _ in range(1000):
        port = _ports.randrange(max(_EPHEMERAL_START - 12000, 1024), _EPHEMERAL_START)
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not claim_port(port):
            continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Until no live process of the process group ``pgid`` is left (Linux's /proc).

    SIGKILL to a member's group reaches its splicer process too, but only the member is reaped by
    its parent: a splicer still dying keeps accepting on the client port for a moment, so a member
    restarted on the same ports would seem to answer before it does.  Zombies hold no sockets.
    """
    wait_until(lambda: not _live_in_group(pgid), timeout, f"process group {pgid} outlived SIGKILL", 0.02)


def _live_in_group(pgid: int) -> bool:
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state not in ("Z", "X"):
                return True
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, message: str, interval: float = 0.1) -> None:
    """Poll a condition that lives in other processes (there is no event to await across processes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(interval)


class ServerLike(Protocol):
    """A running server process as the tests hold one (a chaos MemberProcess, the e2e ServerProcess)."""

    @property
    def proc(self) -> subprocess.Popen[Any] | None: ...

    @property
    def endpoint(self) -> str: ...

    def read_log(self) -> str: ...


def serves(member: ServerLike, key: bytes, tls: TLSConfig | None = None) -> bool:
    """Whether `member` answers a linearizable read of `key` (AssertionError once its process exits)."""
    assert member.proc is not None and member.proc.poll() is None, member.read_log()[-2000:]
    try:
        with Client([member.endpoint], command_timeout=1.0, tls=tls) as client:
            return bool(client.get(key).kvs)
    except Exception:
        return False


@dataclass
class MemberProcess:
    """MemberProcess is one server process slot: its name, ports, data dir, log and running process."""

    index: int
    name: str
    root: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    scheme: str = "http"  # of the client and peer URLs

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.root / f"{self.name}.data"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ChaosCluster:
    """ChaosCluster starts, breaks and heals a cluster of `size` etcdpy members on loopback ports."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        extra_args: Sequence[str] = (),
        seed: int = 0,
        quiet: bool = True,
        tls: bool = False,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        scheme = "https" if tls else "http"
        self.members = [MemberProcess(i, f"m{i}", root, scheme=scheme) for i in range(size)]
        self.extra_args = list(extra_args)
        self.client_tls: TLSConfig | None = None  # what the harness's clients present (None: plaintext)
        if tls:
            cert, key = root / "tls" / "cert.pem", root / "tls" / "key.pem"
            make_self_signed(cert, key, ["127.0.0.1"])
            self.client_tls = TLSConfig(cacert=cert, cert=cert, key=key, always=True)
            files = {"cert-file": cert, "key-file": key, "trusted-ca-file": cert}
            self.extra_args += [
                f"--{prefix}{flag}={path}" for flag, path in files.items() for prefix in ("", "peer-")
            ]
            self.extra_args += ["--client-cert-auth", "--peer-client-cert-auth"]
        self.quiet = quiet
        self.hub = ProxyHub(seed)
        self.links: dict[tuple[int, int], LinkProxy] = {}
        for src in self.members:
            for dst in self.members:
                if src is not dst:
                    target = ("127.0.0.1", dst.peer_port)
                    self.links[src.index, dst.index] = self.hub.add(f"{src.name}->{dst.name}", target)
        self._client: Client | None = None

    # -- processes

    def command(self, member: MemberProcess, state: str) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            sys.executable, "-m", "etcdpy", "server",
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", state,
            "--initial-cluster-token", TOKEN,
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            *self.extra_args,
        ]  # fmt: skip

    def launch(self, member: MemberProcess, *, failpoints: str = "", state: str = "new") -> None:
        """Start `member`'s process (not waiting for it), with `failpoints` armed if given."""
        if member.running:
            raise RuntimeError(f"{member.name} is already running")
        env = dict(os.environ)
        env.pop("ETCDPY_FAILPOINTS", None)
        if failpoints:
            env["ETCDPY_FAILPOINTS"] = failpoints
        env["ETCDPY_PEER_PROXIES"] = ",".join(
            f"127.0.0.1:{peer.peer_port}={self.links[member.index, peer.index].address}"
            for peer in self.members
            if peer is not member
        )
        with member.log_path.open("ab") as log:
            note = f"\n=== chaos: start #{member.starts + 1} failpoints={failpoints or '-'} ===\n"
            log.write(note.encode())
            log.flush()
            member.proc = subprocess.Popen(
                self.command(member, state), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        member.starts += 1
        member.paused = False

    def start(self, timeout: float = 60.0) -> ChaosCluster:
        """Start every member at once and wait until a leader serves writes."""
        for member in self.members:
            self.launch(member)
        self.wait_writable(timeout)
        return self

    def signal(self, member: MemberProcess, sig: int) -> None:
        """Send `sig` to the member's process group (nothing if it is not running)."""
        if member.proc is not None and member.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.proc.pid, sig)

    def kill(self, member: MemberProcess) -> None:
        """Kill -9 the member and reap it."""
        self.signal(member, signal.SIGKILL)
        if member.proc is not None:
            member.proc.wait(timeout=30)
            wait_group_gone(member.proc.pid)
        member.paused = False

    def pause(self, member: MemberProcess) -> None:
        """SIGSTOP the member: it keeps its sockets but answers nothing."""
        self.signal(member, signal.SIGSTOP)
        member.paused = True

    def resume(self, member: MemberProcess) -> None:
        """SIGCONT a paused member."""
        self.signal(member, signal.SIGCONT)
        member.paused = False

    def wipe(self, member: MemberProcess) -> None:
        """Delete the member's data dir (the member must be stopped)."""
        if member.running:
            raise RuntimeError(f"{member.name} is running")
        shutil.rmtree(member.data_dir, ignore_errors=True)

    def stop(self) -> None:
        """Kill every member and close the proxies and the client."""
        for member in self.members:
            self.signal(member, signal.SIGCONT)
            self.kill(member)
        if self._client is not None:
            self._client.close()
            self._client = None
        self.hub.close()

    # -- links

    def set_links(self, pairs: Iterable[tuple[int, int]], fault: LinkFault) -> None:
        """Apply `fault` to the directed links (sender index, receiver index) in `pairs`."""
        for pair in pairs:
            self.links[pair].set(fault)

    def isolate(self, member: MemberProcess, fault: LinkFault) -> None:
        """Apply `fault` to every link to and from `member`."""
        self.set_links([pair for pair in self.links if member.index in pair], fault)

    def heal_links(self) -> None:
        """Open every link."""
        for link in self.links.values():
            if link.fault != OPEN:
                link.set(OPEN)

    # -- clients and state

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def client(self) -> Client:
        """A client (owned by the cluster) over every member, for the harness's own calls."""
        if self._client is None:
            # Calls without a timeout of their own are the final reads: a loaded machine needs margin.
            self._client = Client(self.endpoints, command_timeout=10.0, dial_timeout=1.0, tls=self.client_tls)
        return self._client

    def member_id(self, member: MemberProcess, timeout: float = 30.0) -> int:
        """The member's ID, asked of the member itself (retried: a loaded machine answers slowly)."""
        found: list[int] = []

        def ask() -> bool:
            try:
                found.append(int(self.client().status(member.endpoint, timeout=2.0).header.member_id))
            except Exception:
                return False
            return True

        wait_until(ask, timeout, f"{member.name} never said its ID")
        return found[0]

    def leader(self, timeout: float = 2.0) -> MemberProcess | None:
        """The member that the answering members agree leads, or None."""
        leads: set[int] = set()
        ids: dict[int, MemberProcess] = {}
        for member in self.members:
            if not member.running or member.paused:
                continue
            try:
                status = self.client().status(member.endpoint, timeout=timeout)
            except Exception:
                continue
            ids[status.header.member_id] = member
            leads.add(status.leader)
        if len(leads) != 1:
            return None
        return ids.get(leads.pop())

    def wait_leader(self, timeout: float = 30.0) -> MemberProcess:
        found: list[MemberProcess] = []

        def agreed() -> bool:
            leader = self.leader()
            found[:] = [leader] if leader is not None else []
            return leader is not None

        wait_until(agreed, timeout, "no leader agreed by the running members")
        return found[0]

    def wait_writable(self, timeout: float = 30.0) -> None:
        """Wait until a put succeeds (a leader is elected and a quorum replicates)."""

        def put() -> bool:
            try:
                self.client().put(b"/chaos-health/ready", b"1", timeout=2.0)
            except Exception:
                return False
            return True

        wait_until(put, timeout, "the cluster never accepted a write")

    def replace_member(self, member: MemberProcess, timeout: float = 60.0) -> None:
        """Remove `member`, wipe it, add it back (a new ID, same name and URLs) and start it."""
        client = self.client()
        old_id = self.member_id(member)

        def removed() -> bool:
            try:
                client.member_remove(old_id, timeout=3.0)
            except Exception:
                return not any(old_id == m.ID for m in self._members_listed())
            return True

        wait_until(removed, timeout, f"{member.name} could not be removed")
        # A removed member stops by itself; do not wait for it longer than it takes to learn it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            if member.proc is not None:
                member.proc.wait(timeout=5)
        self.kill(member)
        self.wipe(member)

        def added() -> bool:
            try:
                client.member_add([member.peer_url], timeout=3.0)
            except Exception:
                # The add may have been applied though its answer was lost.
                return any(member.peer_url in m.peerURLs for m in self._members_listed())
            return True

        wait_until(added, timeout, f"{member.name} could not be added back")
        self.launch(member, state="existing")

    def _members_listed(self) -> list[Any]:
        try:
            return list(self.client().member_list(timeout=2.0).members)
        except Exception:
            return []
