"""AuthGate: who a request comes from, checked where etcd checks it before proposing or reading.

A client's credentials come with its call: the gRPC metadata ``token`` (or
``authorization``, the gateway's), else the common name of a verified TLS client
certificate.  The services' wrapper (`etcdpy.server.services.auth.with_credentials`)
puts them in `CREDENTIALS` for the call's task, like the incoming context etcd's
handlers read; `AuthGate.info` resolves them when a check needs them (so a call that
needs none, like Status, ignores a stale token, as etcd does).  `EtcdServer.propose`
stamps the user and the auth revision into the entry's header; the apply chain
(`AuthStore.layer`) checks them again against the applied state.

The member's own proposals (lease expiry) run `as_root`, as etcd's ``WithRoot``.
Anything else with no credentials is nobody: refused wherever auth checks.

Passwords: `hash_password` and `Authenticate`'s check run bcrypt on a small thread
pool, never on the event loop; failed checks spend a per-member budget
(`FailureBudget`) and, once it is spent, Authenticate answers ``too many requests``
until it refills.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import bcrypt

from etcdpy.api import errors
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server.auth.store import NOBODY, ROOT, AuthInfo, AuthStore

log = logging.getLogger("etcdpy.server.auth")

MIN_BCRYPT_COST, MAX_BCRYPT_COST, DEFAULT_BCRYPT_COST = 4, 31, 10
BCRYPT_THREADS = 2


@dataclass(frozen=True)
class Credentials:
    """What a call presented: a token, or a way to the common name of its TLS client certificate."""

    token: str | None = None
    common_name: Callable[[], str | None] | None = None  # asked only when there is no token


ROOT_CREDENTIALS = Credentials()  # a marker: the member itself (compared by identity)
CREDENTIALS: contextvars.ContextVar[Credentials | None] = contextvars.ContextVar(
    "etcdpy_credentials", default=None
)

T = TypeVar("T")


class FailureBudget:
    """A token bucket of failed password checks: `rate` per second, up to `burst`; clock injected."""

    def __init__(self, rate: float = 10.0, burst: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._level = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._level = min(self.burst, self._level + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> bool:
        self._refill()
        return self._level >= 1.0

    def spend(self) -> None:
        self._refill()
        self._level = max(0.0, self._level - 1.0)


class AuthGate:
    """The serving side of auth on one member: credentials -> AuthInfo, checks, password hashing."""

    def __init__(self, store: AuthStore, *, bcrypt_cost: int = DEFAULT_BCRYPT_COST) -> None:
        self.store = store
        if not MIN_BCRYPT_COST <= bcrypt_cost <= MAX_BCRYPT_COST:
            log.warning("bcrypt cost %d is out of range: using %d", bcrypt_cost, DEFAULT_BCRYPT_COST)
            bcrypt_cost = DEFAULT_BCRYPT_COST
        self.bcrypt_cost = bcrypt_cost
        self.failures = FailureBudget()
        self._pool = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="etcdpy-bcrypt")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- who asks ----

    def info(self) -> AuthInfo | None:
        """The caller's AuthInfo (None: no credentials); raises ErrInvalidAuthToken for a bad token."""
        creds = CREDENTIALS.get()
        if creds is None:
            return None
        if creds is ROOT_CREDENTIALS:
            return AuthInfo(ROOT, self.store.revision)
        if creds.token is not None:
            resolved = self.store.tokens.info(creds.token, self.store.revision)
            if resolved is None:
                raise errors.ErrInvalidAuthToken()
            return AuthInfo(*resolved)
        name = creds.common_name() if creds.common_name is not None else None
        if name:
            return AuthInfo(name, self.store.revision)
        return None

    def stamp(self, header: raft_internal_pb2.RequestHeader) -> None:
        """Put the caller's user and auth revision into a proposal's header, as etcd does."""
        info = self.info()
        if info is not None:
            header.username = info.username
            header.auth_revision = info.revision

    async def as_root(self, call: Awaitable[T]) -> T:
        """Await `call` as the member itself (etcd's WithRoot, used for lease expiry)."""
        token = CREDENTIALS.set(ROOT_CREDENTIALS)
        try:
            return await call
        finally:
            CREDENTIALS.reset(token)

    # ---- checks made before reading or proposing (etcd's v3_server.go and v3rpc) ----

    def check_range(self, key: bytes, range_end: bytes) -> AuthInfo:
        info = self.info() or NOBODY
        self.store.check_op(info, key, range_end, write=False)
        return info

    def check_txn(self, txn: rpc_pb2.TxnRequest) -> AuthInfo:
        info = self.info() or NOBODY
        self.store.check_txn(info, txn)
        return info

    def check_still_current(self, info: AuthInfo) -> None:
        """After a local read: refuse it if the auth store changed meanwhile (etcd's doSerialize)."""
        if info.revision != 0 and info.revision != self.store.revision:
            raise errors.ErrAuthOldRevision()

    def check_admin(self) -> None:
        self.store.check_admin(self.info() or NOBODY)

    def check_watch(self, key: bytes, range_end: bytes) -> None:
        """etcd's isWatchPermitted: key "" is "\\x00"; a from-key end ("\\x00") is checked as one key."""
        key = key or b"\x00"
        if range_end == b"\x00":
            range_end = b""
        self.store.check_op(self.info() or NOBODY, key, range_end, write=False)

    # ---- passwords ----

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash_password(self, password: str) -> str:
        """bcrypt of `password` at the member's cost, base64 as etcd 3.5's hashedPassword field carries it."""
        hashed = await self._in_pool(bcrypt.hashpw, password.encode(), bcrypt.gensalt(self.bcrypt_cost))
        return base64.b64encode(hashed).decode()

    async def check_password(self, name: str, password: str) -> int:
        """The auth revision the password was checked at; ErrAuthFailed (budgeted) when it does not match."""
        hashed, revision = self.store.password_of(name)
        if not self.failures.available():
            raise errors.ErrTooManyRequests()
        if not await self._in_pool(_matches, password.encode(), hashed):
            self.failures.spend()
            raise errors.ErrAuthFailed()
        return revision


def _matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # not a bcrypt hash (an empty one): nothing matches it
        return False
