"""STM: conflicting transactions retry instead of losing updates, each isolation level as etcd's Go STM.

Every test runs against the reference etcd and etcdpy (see conftest.py).
Interference is injected deterministically: the transaction's function writes
through a second client between its reads, on its first attempt only.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.client import Client
from etcdpy.client.concurrency.stm import STM, Isolation, run_stm

GUARDED = [Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE, Isolation.REPEATABLE_READS]


@pytest.fixture
def other_client(shared_server: ServerProcess) -> Iterator[Client]:
    """A second client: the concurrent writer a transaction must notice."""
    with Client(shared_server.endpoint) as client:
        yield client


class CountingClient(Client):
    """A client that counts its reads and txns, to see which round trips an STM makes."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.ranges = 0
        self.txns = 0

    def send_range(self, request: pb.RangeRequest, *, timeout: float | None = None) -> pb.RangeResponse:
        self.ranges += 1
        return super().send_range(request, timeout=timeout)

    def send_txn(self, request: pb.TxnRequest, *, timeout: float | None = None) -> pb.TxnResponse:
        self.txns += 1
        return super().send_txn(request, timeout=timeout)


@pytest.mark.parametrize("isolation", GUARDED, ids=lambda i: i.value)
def test_concurrent_transfers_keep_every_balance_exact(
    shared_server: ServerProcess, recipe_name: str, isolation: Isolation
) -> None:
    accounts = [f"{recipe_name}/acct{i}" for i in range(4)]
    threads, transfers = 4, 12
    with Client(shared_server.endpoint) as setup:
        for key in accounts:
            setup.put(key, "100")
    committed: list[tuple[str, str, int]] = []
    attempts = [0]
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with Client(shared_server.endpoint) as client:
            start.wait()
            for _ in range(transfers):
                src, dst = rng.sample(accounts, 2)
                amount = rng.randint(1, 30)

                def transfer(stm: STM, src: str = src, dst: str = dst, amount: int = amount) -> None:
                    with lock:
                        attempts[0] += 1
                    stm.put(src, str(int(stm.get(src)) - amount))
                    stm.put(dst, str(int(stm.get(dst)) + amount))

                run_stm(client, transfer, isolation=isolation)
                with lock:
                    committed.append((src, dst, amount))

    workers = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert len(committed) == threads * transfers
    expected = dict.fromkeys(accounts, 100)
    for src, dst, amount in committed:
        expected[src] -= amount
        expected[dst] += amount
    with Client(shared_server.endpoint) as check:
        balances = {key: int(check.get(key).kvs[0].value) for key in accounts}
    assert balances == expected, "a transfer was lost or applied twice"
    assert sum(balances.values()) == 100 * len(accounts)
    assert attempts[0] >= len(committed)


@pytest.mark.parametrize("isolation", GUARDED, ids=lambda i: i.value)
def test_a_write_between_read_and_commit_makes_the_transaction_retry_with_the_new_value(
    recipe_client: Client, other_client: Client, recipe_name: str, isolation: Isolation
) -> None:
    key = f"{recipe_name}/counter"
    recipe_client.put(key, "1")
    seen: list[bytes] = []

    def increment(stm: STM) -> None:
        value = stm.get(key)
        seen.append(value)
        if len(seen) == 1:
            other_client.put(key, "10")
        stm.put(key, str(int(value) + 1))

    response = run_stm(recipe_client, increment, isolation=isolation)
    assert response.succeeded
    assert seen == [b"1", b"10"]
    assert recipe_client.get(key).kvs[0].value == b"11"


def test_read_committed_does_not_check_reads_so_a_concurrent_write_is_overwritten(
    recipe_client: Client, other_client: Client, recipe_name: str
) -> None:
    key = f"{recipe_name}/counter"
    recipe_client.put(key, "1")
    attempts = []

    def increment(stm: STM) -> None:
        attempts.append(1)
        value = stm.get(key)
        other_client.put(key, "10")
        stm.put(key, str(int(value) + 1))

    run_stm(recipe_client, increment, isolation=Isolation.READ_COMMITTED)
    assert len(attempts) == 1
    assert recipe_client.get(key).kvs[0].value == b"2"


@pytest.mark.parametrize(
    ("isolation", "second_read"),
    [
        (Isolation.SERIALIZABLE_SNAPSHOT, b"b0"),
        (Isolation.SERIALIZABLE, b"b0"),
        (Isolation.REPEATABLE_READS, b"b1"),
        (Isolation.READ_COMMITTED, b"b1"),
    ],
    ids=lambda v: v.value if isinstance(v, Isolation) else v.decode(),
)
def test_serializable_levels_read_every_key_at_the_first_reads_revision(
    recipe_client: Client,
    other_client: Client,
    recipe_name: str,
    isolation: Isolation,
    second_read: bytes,
) -> None:
    a, b = f"{recipe_name}/a", f"{recipe_name}/b"
    recipe_client.put(a, "a0")
    recipe_client.put(b, "b0")
    reads: list[bytes] = []

    def read_both(stm: STM) -> None:
        stm.get(a)
        if not reads:
            other_client.put(b, "b1")
        reads.append(stm.get(b))

    run_stm(recipe_client, read_both, isolation=isolation)
    assert reads[0] == second_read


def test_repeated_reads_of_a_key_return_the_first_read(
    recipe_client: Client, other_client: Client, recipe_name: str
) -> None:
    key = f"{recipe_name}/k"
    recipe_client.put(key, "v0")
    pairs: list[tuple[bytes, bytes]] = []

    def read_twice(stm: STM) -> None:
        first = stm.get(key)
        if not pairs:
            other_client.put(key, "v1")
        pairs.append((first, stm.get(key)))

    run_stm(recipe_client, read_twice, isolation=Isolation.REPEATABLE_READS)
    assert pairs == [(b"v0", b"v0"), (b"v1", b"v1")]  # the first attempt conflicted on commit


@pytest.mark.parametrize(
    ("isolation", "attempts"), [(Isolation.SERIALIZABLE_SNAPSHOT, 2), (Isolation.SERIALIZABLE, 1)]
)
def test_only_serializable_snapshot_fails_on_a_blind_write_to_a_key_changed_since_the_snapshot(
    recipe_client: Client, other_client: Client, recipe_name: str, isolation: Isolation, attempts: int
) -> None:
    read_key, written_key = f"{recipe_name}/r", f"{recipe_name}/w"
    recipe_client.put(read_key, "r")
    runs: list[int] = []

    def blind_write(stm: STM) -> None:
        runs.append(1)
        stm.get(read_key)
        if len(runs) == 1:
            other_client.put(written_key, "theirs")
        stm.put(written_key, "mine")

    run_stm(recipe_client, blind_write, isolation=isolation)
    assert len(runs) == attempts
    assert recipe_client.get(written_key).kvs[0].value == b"mine"


def test_writes_read_back_inside_the_transaction_and_delete_reads_as_empty(
    recipe_client: Client, recipe_name: str
) -> None:
    key, gone = f"{recipe_name}/k", f"{recipe_name}/gone"
    recipe_client.put(gone, "here")
    seen: list[tuple[bytes, bytes, int]] = []

    def write_then_read(stm: STM) -> None:
        stm.put(key, "new")
        stm.delete(gone)
        seen.append((stm.get(key), stm.get(gone), stm.rev(f"{recipe_name}/absent")))

    run_stm(recipe_client, write_then_read)
    assert seen == [(b"new", b"", 0)]
    assert recipe_client.get(key).kvs[0].value == b"new"
    assert recipe_client.get(gone).count == 0


def test_an_exception_in_the_function_aborts_without_writing(recipe_client: Client, recipe_name: str) -> None:
    key = f"{recipe_name}/k"

    def fail_after_writing(stm: STM) -> None:
        stm.put(key, "never")
        raise ValueError("insufficient funds")

    with pytest.raises(ValueError, match="insufficient funds"):
        run_stm(recipe_client, fail_after_writing)
    assert recipe_client.get(key).count == 0


def test_prefetch_reads_all_keys_in_one_round_trip_and_a_conflict_refetches_them_with_the_commit(
    shared_server: ServerProcess, other_client: Client, recipe_name: str
) -> None:
    keys = [f"{recipe_name}/{i}" for i in range(3)]
    for key in keys:
        other_client.put(key, "0")
    runs: list[list[bytes]] = []
    client = CountingClient(shared_server.endpoint)

    def bump_all(stm: STM) -> None:
        runs.append([stm.get(key) for key in keys])
        if len(runs) == 1:
            other_client.put(keys[1], "5")
        for key in keys:
            stm.put(key, str(int(stm.get(key)) + 1))

    try:
        run_stm(client, bump_all, prefetch=keys)
    finally:
        client.close()
    # One txn prefetches, one commit conflicts (its failure branch reads the keys again),
    # one commit succeeds; no single-key read at all.
    assert (client.ranges, client.txns) == (0, 3)
    assert runs == [[b"0", b"0", b"0"], [b"0", b"5", b"0"]]
    assert [other_client.get(key).kvs[0].value for key in keys] == [b"1", b"6", b"1"]
