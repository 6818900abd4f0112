"""`Session`: a lease renewed by a background thread, the liveness every recipe builds on."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from etcdpy.api.errors import ErrLeaseNotFound
from etcdpy.client.client import Client

__all__ = ["DEFAULT_TTL", "Session"]

DEFAULT_TTL = 60
# After a failed renewal, try again this soon (but never past the lease's expiry).
_RETRY_INTERVAL = 0.5

_log = logging.getLogger(__name__)


class Session:
    """A lease granted (or adopted) for one client, renewed every third of its TTL until `close`.

    Recipes attach their keys to the lease, so the keys vanish with the session:
    when `close` revokes the lease, or when renewals stop reaching the cluster
    for a whole TTL (the process died or was cut off).  `lost` is set as soon as
    the session knows its lease is gone: a renewal answered "not found" (someone
    revoked it, or it expired), or no renewal succeeded for a whole TTL counted
    from the moment the last successful one was sent.  A revoked lease is
    noticed at the next renewal, within a third of the TTL.  `close` does not
    set `lost` (the lease was given up, not lost).

    One session is one owner: two `Mutex` objects on the same session and name
    share a key, so they do not exclude each other (as in etcd's Go client)::

        with Session(client, ttl=10) as session:
            session.add_lost_callback(lambda: print("lease gone: stop writing"))
            with Mutex(session, "jobs/nightly"):
                ...

    ``ttl`` <= 0 means the default, 60 s, as etcd's ``concurrency.WithTTL``; the
    server may raise it to its minimum (`ttl` holds the granted value).
    """

    def __init__(self, client: Client, *, ttl: int = DEFAULT_TTL, lease_id: int = 0) -> None:
        self.client = client
        self.lost = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # Guarded by _lock; emptied once they have run (lost callbacks run at most once).
        self._lost_callbacks: list[Callable[[], None]] = []
        self._end_callbacks: dict[int, Callable[[], None]] = {}
        self._next_callback_id = 0
        started = time.monotonic()
        if lease_id == 0:
            granted = client.lease_grant(ttl if ttl > 0 else DEFAULT_TTL)
            self.lease_id: int = granted.ID
            self.ttl: int = granted.TTL
        else:
            renewed = client.lease_keep_alive_once(lease_id)  # ErrLeaseNotFound if it is gone
            self.lease_id = lease_id
            self.ttl = renewed.TTL
        # invariant: the lease is known to live until _expires_at (monotonic), no longer.
        self._expires_at = started + self.ttl
        self._thread = threading.Thread(
            target=self._keep_alive, name=f"etcdpy-session-{self.lease_id:x}", daemon=True
        )
        self._thread.start()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed.is_set()

    @property
    def ended(self) -> bool:
        """Whether the session is over: closed or lost."""
        return self._closed.is_set() or self.lost.is_set()

    def add_lost_callback(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once when the lease is lost (from the keep-alive thread); at once if already lost."""
        with self._lock:
            if not self.lost.is_set():
                self._lost_callbacks.append(fn)
                return
        fn()

    def add_end_callback(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` once when the session ends (lost or closed), at once if it has; returns a remover.

        Waiting recipes use it to stop waiting for a session that cannot hold keys anymore.
        """
        with self._lock:
            if not self.ended:
                callback_id = self._next_callback_id
                self._next_callback_id += 1
                self._end_callbacks[callback_id] = fn

                def remove() -> None:
                    with self._lock:
                        self._end_callbacks.pop(callback_id, None)

                return remove
        fn()
        return lambda: None

    def close(self) -> None:
        """Stop renewing and revoke the lease (its keys are deleted); later calls do nothing."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            ending = self._take_end_callbacks()
        _run_all(ending)
        if threading.current_thread() is not self._thread:  # a lost callback may close its session
            self._thread.join()
        if self.lost.is_set():
            return
        # A lease that expired meanwhile is what revoking would have achieved.
        with contextlib.suppress(ErrLeaseNotFound):
            self.client.lease_revoke(self.lease_id)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _keep_alive(self) -> None:
        interval = self.ttl / 3.0
        while not self._closed.wait(interval):
            sent = time.monotonic()
            remaining = self._expires_at - sent
            if remaining <= 0:
                self._mark_lost()
                return
            try:
                response = self.client.lease_keep_alive_once(
                    self.lease_id, timeout=min(self.client.command_timeout, remaining)
                )
            except ErrLeaseNotFound:
                self._mark_lost()
                return
            except Exception as err:  # any failed renewal only means the lease is not renewed yet
                _log.debug("session %x: renewal failed: %s", self.lease_id, err)
                interval = max(0.0, min(_RETRY_INTERVAL, self._expires_at - time.monotonic()))
                continue
            # The server restarted its countdown no earlier than the request left.
            self._expires_at = sent + response.TTL
            interval = response.TTL / 3.0

    def _mark_lost(self) -> None:
        with self._lock:
            if self._closed.is_set() or self.lost.is_set():
                return
            self.lost.set()
            callbacks, self._lost_callbacks = self._lost_callbacks, []
            ending = self._take_end_callbacks()
        _run_all(ending + callbacks)

    def _take_end_callbacks(self) -> list[Callable[[], None]]:
        callbacks = list(self._end_callbacks.values())
        self._end_callbacks.clear()
        return callbacks


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    """Run each callback; one that fails is logged and does not stop the others."""
    for fn in callbacks:
        try:
            fn()
        except Exception:
            _log.exception("session callback %r failed", fn)
