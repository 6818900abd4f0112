"""Key-value workloads: registers (reads, writes, CAS), bank transfers (multi-key txns), compaction."""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb.kv_pb2 import KeyValue
from etcdpy.chaos.history import PREFIX
from etcdpy.chaos.workload import Context, Process, recorded_cas, recorded_get, recorded_put, recorded_txn
from etcdpy.client import Client, CompareResult, CompareTarget, compare, op_get, op_put
from etcdpy.client import requests as rq


class Registers:
    """Registers: clients read, write and compare-and-set a few keys, for the linearizability checker.

    Every value written is unique (client, sequence number), so a read names the write it saw.
    """

    name = "register"

    def __init__(self, clients: int = 3, keys: int = 5) -> None:
        self.clients = clients
        self.keys = [PREFIX + f"reg/{k}".encode() for k in range(keys)]

    def start(self, ctx: Context) -> None:
        for c in range(self.clients):
            ctx.spawn(f"register-{c}", lambda c=c: self._client(ctx, c))  # type: ignore[misc]

    def _client(self, ctx: Context, index: int) -> None:
        rng = ctx.rng(f"register-{index}")
        client = ctx.client(index)
        proc = Process(index)
        seen: dict[bytes, KeyValue | None] = {}
        sequence = 0
        while not ctx.stop.is_set():
            key = rng.choice(self.keys)
            sequence += 1
            value = f"r{index}.{sequence}".encode()
            ctx.history.count(self.name)
            dice = rng.random()
            if dice < 0.4:
                got = recorded_get(ctx, proc, client, key)
                if got is not False:
                    seen[key] = got  # type: ignore[assignment]
            elif dice < 0.7:
                recorded_put(ctx, proc, client, key, value)
            else:
                ok = recorded_cas(ctx, proc, client, key, seen.get(key), value, by_revision=False)
                if ok is not True:
                    seen.pop(key, None)

    def finish(self, ctx: Context, client: Client) -> None:
        """Nothing of its own: the linearizability checker judges the registers."""


class Bank:
    """Bank: transfers between accounts in transactions guarded by mod_revision; the total never changes.

    Readers read every account in one range (one revision), now and at past revisions:
    each read must add up to the total (a transfer is atomic and isolated).
    """

    name = "bank"

    def __init__(self, clients: int = 2, accounts: int = 4, balance: int = 100) -> None:
        self.clients = clients
        self.accounts = [PREFIX + f"bank/{a}".encode() for a in range(accounts)]
        self.balance = balance

    @property
    def total(self) -> int:
        return self.balance * len(self.accounts)

    def start(self, ctx: Context) -> None:
        setup = ctx.client(0)
        request = pb.TxnRequest(
            compare=[compare(self.accounts[0], CompareTarget.CREATE, CompareResult.EQUAL, 0)],
            success=[op_put(rq.put_request(a, str(self.balance).encode())) for a in self.accounts],
        )
        for _ in range(20):
            if recorded_txn(ctx, setup, request, "bank setup") is not None:
                break
        for c in range(self.clients):
            ctx.spawn(f"bank-{c}", lambda c=c: self._client(ctx, c))  # type: ignore[misc]

    def _read(self, ctx: Context, client: Client, revision: int = 0) -> pb.RangeResponse | None:
        try:
            return client.get(PREFIX + b"bank/", prefix=True, revision=revision)
        except Exception:
            return None

    def _check(self, ctx: Context, response: pb.RangeResponse, at: str) -> None:
        balances = {kv.key: int(kv.value) for kv in response.kvs}
        if sorted(balances) != sorted(self.accounts) or sum(balances.values()) != self.total:
            shown = ", ".join(f"{k.decode()}={v}" for k, v in sorted(balances.items()))
            ctx.history.anomaly("bank", f"accounts read {at} add up to {sum(balances.values())}: {shown}")

    def _client(self, ctx: Context, index: int) -> None:
        rng = ctx.rng(f"bank-{index}")
        client = ctx.client(index + 1)
        revisions: list[int] = []
        while not ctx.stop.is_set():
            ctx.history.count(self.name)
            called = ctx.history.clock()
            read = self._read(ctx, client)
            if read is None:
                continue
            ctx.history.timed(called, read.header.revision, "bank read")
            self._check(ctx, read, f"at {read.header.revision}")
            revisions.append(read.header.revision)
            if rng.random() < 0.2 and revisions:
                past = rng.choice(revisions)
                old = self._read(ctx, client, past)
                if old is not None:
                    self._check(ctx, old, f"at past revision {past}")
                continue
            kvs = {kv.key: kv for kv in read.kvs}
            source, target = rng.sample(self.accounts, 2)
            if source not in kvs or target not in kvs:
                continue
            amount = rng.randint(1, 10)
            request = pb.TxnRequest(
                compare=[
                    compare(source, CompareTarget.MOD, CompareResult.EQUAL, kvs[source].mod_revision),
                    compare(target, CompareTarget.MOD, CompareResult.EQUAL, kvs[target].mod_revision),
                ],
                success=[
                    op_put(rq.put_request(source, str(int(kvs[source].value) - amount).encode())),
                    op_put(rq.put_request(target, str(int(kvs[target].value) + amount).encode())),
                ],
                failure=[op_get(rq.range_request(PREFIX + b"bank/", prefix=True))],
            )
            recorded_txn(ctx, client, request, "bank transfer")

    def finish(self, ctx: Context, client: Client) -> None:
        """The balances once everything healed still add up."""
        read = self._read(ctx, client)
        if read is None:
            ctx.history.anomaly("bank", "the accounts could not be read after the faults healed")
        else:
            self._check(ctx, read, "at the end")


class Compactor:
    """Compactor: compacts the history every second or so, keeping the last `keep` revisions."""

    name = "compact"

    def __init__(self, keep: int = 40, every: float = 1.0) -> None:
        self.keep = keep
        self.every = every

    def start(self, ctx: Context) -> None:
        ctx.spawn("compactor", lambda: self._compact(ctx))

    def _compact(self, ctx: Context) -> None:
        client = ctx.client(0)
        done = 0
        while not ctx.stop.wait(self.every):
            try:
                target = client.get(PREFIX, prefix=True, count_only=True).header.revision - self.keep
            except Exception:
                continue
            if target <= done:
                continue
            ctx.history.count(self.name)
            ctx.history.compacted(target)
            try:
                client.compact(target)
            except Exception:
                continue  # an ErrCompacted or an unknown outcome: either way later targets are higher
            done = target

    def finish(self, ctx: Context, client: Client) -> None:
        """Nothing of its own: the watch and lost-write checks take the compactions into account."""
