"""Lease workloads: leases kept alive then left to expire, and a lock whose holders fence their writes.

Leases: while a client keeps a lease alive, every keep-alive answered at time t with
TTL T promises the lease lives until at least (call time + T); a read of the lease's
key that returned before that promise ran out must find the key, and a keep-alive
must not be refused before it either.  Once the client stops, the lease must expire
and its key disappear soon after the faults heal.

Fenced lock: clients take a lock with etcd's layout (``<name>/<lease hex>``, the lowest
create_revision owns it; half of them through `etcdpy.client.concurrency.Mutex`) and,
while holding it, increment a counter in a txn guarded by "my lock key still has its
create_revision" (the fencing token).  If the lock
ever let two holders write, two acknowledged increments write the same value.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from itertools import pairwise

from etcdpy.api.errors import ErrLeaseNotFound
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.chaos.history import PREFIX
from etcdpy.chaos.workload import Context, recorded_txn
from etcdpy.checker.watch import Put
from etcdpy.client import Client, CompareResult, CompareTarget, SortOrder, SortTarget, compare, op_get, op_put
from etcdpy.client import requests as rq
from etcdpy.client.concurrency import Mutex, Session

EXPIRY_SLACK = 15.0  # seconds past a lease's last possible renewal by which it must be gone
# (etcdpy checkpoints remaining TTLs every 5 s, so a leader change may extend a lease that much)


@dataclass
class LeaseRecord:
    """LeaseRecord is one lease the workload granted and what it did with it."""

    lease_id: int
    key: bytes
    ttl: int
    key_written: bool = False
    last_attempt: float = 0.0  # when the last keep-alive (or the grant) was sent: it may renew until then
    revoked: bool = False


class Leases:
    """Leases: grant, attach a key, keep alive for a while, then revoke or abandon."""

    name = "lease"

    def __init__(self, clients: int = 2, ttl: int = 2) -> None:
        self.clients = clients
        self.ttl = ttl
        self.leases: list[LeaseRecord] = []

    def start(self, ctx: Context) -> None:
        for c in range(self.clients):
            ctx.spawn(f"lease-{c}", lambda c=c: self._client(ctx, c))  # type: ignore[misc]

    def _client(self, ctx: Context, index: int) -> None:
        rng = ctx.rng(f"lease-{index}")
        client = ctx.client(index)
        clock = ctx.history.clock
        while not ctx.stop.is_set():
            ctx.history.count(self.name)
            called = clock()
            try:
                granted = client.lease_grant(self.ttl)
            except Exception:
                continue
            record = LeaseRecord(
                granted.ID, PREFIX + f"lease/{granted.ID:x}".encode(), granted.TTL, False, called
            )
            self.leases.append(record)
            alive_until = called + granted.TTL
            try:
                put = client.put(record.key, b"leased", lease=record.lease_id)
            except Exception:
                put = None
            if put is not None:
                record.key_written = True
                ctx.history.committed(put.header.revision, Put(record.key, b"leased", record.lease_id))
            keep_for = clock() + rng.uniform(0, 3 * self.ttl)
            while clock() < keep_for and not ctx.stop.wait(self.ttl / 3):
                alive_until = self._renew(ctx, client, record, alive_until)
            if rng.random() < 0.5:
                try:
                    client.lease_revoke(record.lease_id)
                    record.revoked = True
                except Exception:
                    pass

    def _renew(self, ctx: Context, client: Client, record: LeaseRecord, alive_until: float) -> float:
        """One keep-alive and one read of the key; returns the new lower bound of the lease's life."""
        clock = ctx.history.clock
        called = record.last_attempt = clock()
        try:
            renewed = client.lease_keep_alive_once(record.lease_id)
        except ErrLeaseNotFound:
            if clock() < alive_until:
                ctx.history.anomaly(
                    "lease",
                    f"lease {record.lease_id:x} was refused {alive_until - clock():.2f}s "
                    "before it could expire",
                )
            return alive_until
        except Exception:
            return alive_until
        alive_until = max(alive_until, called + renewed.TTL)
        if not record.key_written:
            return alive_until
        try:
            read = client.get(record.key)
        except Exception:
            return alive_until
        if not read.kvs and clock() < alive_until:
            ctx.history.anomaly(
                "lease",
                f"key {record.key.decode()} vanished at revision {read.header.revision}, "
                f"{alive_until - clock():.2f}s before its lease could expire",
            )
        return alive_until

    def finish(self, ctx: Context, client: Client) -> None:
        """Every lease expires (or was revoked) and takes its key with it, within its TTL plus slack."""
        clock = ctx.history.clock
        healed = clock()
        for record in self.leases:
            deadline = max(record.last_attempt, healed) + record.ttl + EXPIRY_SLACK
            while True:
                try:
                    remaining = client.lease_time_to_live(record.lease_id).TTL
                    present = bool(client.get(record.key).kvs) if record.key_written else False
                except Exception:
                    remaining, present = 1, True
                if remaining == -1 and not present:
                    break
                if clock() > deadline:
                    ctx.history.anomaly(
                        "lease",
                        f"lease {record.lease_id:x} (TTL {record.ttl}s, revoked={record.revoked}) still has "
                        f"TTL {remaining} and its key present={present} "
                        f"{EXPIRY_SLACK}s after it should be gone",
                    )
                    break
                ctx.stop.wait(0.2)


class FencedLock:
    """FencedLock: holders of one lock increment a counter with writes fenced by their lock key.

    Even-numbered clients take the lock with `etcdpy.client.concurrency.Mutex` (fenced
    by ``is_owner()``), odd-numbered ones with plain txns on the same layout, so the
    two implementations must also exclude each other.
    """

    name = "lock"

    def __init__(self, clients: int = 3, ttl: int = 2) -> None:
        self.clients = clients
        self.ttl = ttl
        self.lock = PREFIX + b"lock/"
        self.counter = PREFIX + b"lock-counter"
        # (value written, fencing token, revision) of each acknowledged increment
        self.acked: list[tuple[int, int, int]] = []
        self.unknown = 0  # increments whose outcome never arrived

    def start(self, ctx: Context) -> None:
        for c in range(self.clients):
            body = self._recipe_client if c % 2 == 0 else self._txn_client
            ctx.spawn(f"lock-{c}", lambda c=c, body=body: body(ctx, c))  # type: ignore[misc]

    def _recipe_client(self, ctx: Context, index: int) -> None:
        client = ctx.client(index)
        while not ctx.stop.is_set():
            ctx.history.count(self.name)
            try:
                session = Session(client, ttl=self.ttl)
            except Exception:
                continue
            try:
                mutex = Mutex(session, self.lock[:-1])
                mutex.lock(timeout=3 * self.ttl)
                self._increment(ctx, client, mutex.is_owner(), mutex.revision)
                mutex.unlock()
            except Exception:
                pass  # lock not taken or lost, or a release that failed: the lease ends it
            finally:
                with contextlib.suppress(Exception):
                    session.close()

    def _txn_client(self, ctx: Context, index: int) -> None:
        client = ctx.client(index)
        while not ctx.stop.is_set():
            ctx.history.count(self.name)
            try:
                lease = client.lease_grant(self.ttl).ID
            except Exception:
                continue
            key = self.lock + f"{lease:x}".encode()
            token = self._acquire(ctx, client, key, lease)
            if token is not None:
                self._increment(
                    ctx, client, compare(key, CompareTarget.CREATE, CompareResult.EQUAL, token), token
                )
            with contextlib.suppress(Exception):  # if the revoke fails, the lease expires by itself
                client.lease_revoke(lease)  # releases the lock (deletes the key)

    def _acquire(self, ctx: Context, client: Client, key: bytes, lease: int) -> int | None:
        """Create the lock key and wait until it is the oldest; its create_revision, or None."""
        created = recorded_txn(
            ctx,
            client,
            pb.TxnRequest(
                compare=[compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0)],
                success=[op_put(rq.put_request(key, b"", lease=lease))],
                failure=[op_get(rq.range_request(key))],
            ),
            "lock create",
        )
        if created is None or not created.succeeded:
            return None
        token = created.header.revision
        deadline = ctx.history.clock() + 3 * self.ttl
        while not ctx.stop.is_set() and ctx.history.clock() < deadline:
            try:
                client.lease_keep_alive_once(lease)
                owners = client.get(
                    self.lock,
                    prefix=True,
                    limit=1,
                    sort_order=SortOrder.ASCEND,
                    sort_target=SortTarget.CREATE,
                )
            except Exception:
                return None
            if not owners.kvs or owners.kvs[0].create_revision > token:
                return None  # our key is gone: the lease expired while we waited
            if owners.kvs[0].key == key:
                return token
            ctx.stop.wait(0.05)
        return None

    def _increment(self, ctx: Context, client: Client, fence: pb.Compare, token: int) -> None:
        """Read the counter and write it plus one, only if the lock is still ours (`fence`)."""
        try:
            current = client.get(self.counter)
        except Exception:
            return
        value = int(current.kvs[0].value) + 1 if current.kvs else 1
        response = recorded_txn(
            ctx,
            client,
            pb.TxnRequest(
                compare=[fence], success=[op_put(rq.put_request(self.counter, str(value).encode()))]
            ),
            "fenced write",
        )
        if response is None:
            self.unknown += 1
        elif response.succeeded:
            self.acked.append((value, token, response.header.revision))

    def finish(self, ctx: Context, client: Client) -> None:
        """Check the fenced writes against the counter's final value."""
        final = client.get(self.counter)
        count = int(final.kvs[0].value) if final.kvs else 0
        for problem in fencing_violations(self.acked, self.unknown, count):
            ctx.history.anomaly("fenced-lock", problem)


def fencing_violations(acked: list[tuple[int, int, int]], unknown: int, count: int) -> list[str]:
    """What is wrong with a lock's fenced increments: `acked` lists (value written, token, revision).

    No two acknowledged increments may write the same count (two holders at once); the
    tokens of successive writes never go down; the final `count` lies between the
    acknowledged increments and those plus the ones of unknown outcome.
    """
    problems = []
    written: dict[int, tuple[int, int]] = {}
    for value, token, revision in acked:
        if value in written:
            other_token, other_revision = written[value]
            problems.append(
                f"holders with tokens {other_token} and {token} both wrote count {value} "
                f"(revisions {other_revision} and {revision}): the lock let two holders in"
            )
        written[value] = (token, revision)
    by_revision = sorted(acked, key=lambda write: write[2])
    for (_, token_a, rev_a), (_, token_b, rev_b) in pairwise(by_revision):
        if token_b < token_a:
            problems.append(
                f"a write with token {token_b} at revision {rev_b} follows token {token_a} at {rev_a}"
            )
    if not len(acked) <= count <= len(acked) + unknown:
        problems.append(
            f"the counter is {count} after {len(acked)} acknowledged and {unknown} unknown increments"
        )
    return problems
