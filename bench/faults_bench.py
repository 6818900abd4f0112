"""faults_bench: acknowledged compare-and-set increments while members are killed, etcd 3.4 and etcdpy.

Issue 18's target under faults: 3 members, a member killed with -9 (and started again at once) every
few seconds, 6 clients incrementing one counter with compare-and-set transactions; etcdpy must
acknowledge at least 0.7 of etcd's increments in the same time, losing none.

Each client reads the counter (linearizable Range), then sends a Txn: if the key's mod_revision is
still the one read, put value + 1.  A Txn that succeeded is an acknowledged increment; a call that
failed without an answer (UNAVAILABLE, DEADLINE_EXCEEDED...) may or may not have happened and is
counted as unknown; the client then moves to the next member.  Every `--interval` seconds a random
member is killed with -9 and started again.  Afterwards (every member back, a leader agreed) the
counter's value must lie between the acknowledged increments and the acknowledged plus unknown ones:
below means an acknowledged write was lost.

Usage: ``python bench/faults_bench.py [--seconds 30] [--interval 4] [--clients 6] [--runs 1]
[--workers 1]`` (``--workers N`` adds a column: etcdpy with --experimental-client-workers N).
Times are etcd's defaults (heartbeat 100 ms, election 1 s) for both servers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from benchlib import REPO

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import ProcCluster

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

DEFAULT_TIMES = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults
KEY = b"faults-bench/counter"
CALL_SECONDS = 2.0


@dataclass
class Outcome:
    acknowledged: int
    unknown: int
    races_lost: int
    final: int
    kills: int

    @property
    def lost(self) -> bool:
        return not self.acknowledged <= self.final <= self.acknowledged + self.unknown


def client(
    endpoints: list[str], first: int, stop: threading.Event, counts: list[int], lock: threading.Lock
) -> None:
    """Increment the counter until `stop`; counts[0] acknowledged, counts[1] unknown, counts[2] lost races
    (the Txn answered, but another client's increment came first)."""
    which = first
    while not stop.is_set():
        channel = grpc.insecure_channel(endpoints[which % len(endpoints)])
        kv = rpc_pb2_grpc.KVStub(channel)
        try:
            while not stop.is_set():
                got = kv.Range(rpc_pb2.RangeRequest(key=KEY), timeout=CALL_SECONDS)
                value = int(got.kvs[0].value) if got.kvs else 0
                mod = got.kvs[0].mod_revision if got.kvs else 0
                txn = rpc_pb2.TxnRequest(
                    compare=[
                        rpc_pb2.Compare(
                            key=KEY,
                            target=rpc_pb2.Compare.MOD,
                            result=rpc_pb2.Compare.EQUAL,
                            mod_revision=mod,
                        )
                    ],
                    success=[
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=KEY, value=b"%d" % (value + 1)))
                    ],
                )
                try:
                    answer = kv.Txn(txn, timeout=CALL_SECONDS)
                except grpc.RpcError:
                    with lock:
                        counts[1] += 1
                    raise
                with lock:
                    counts[0 if answer.succeeded else 2] += 1
        except grpc.RpcError:
            which += 1  # the member may be down: the next one
            time.sleep(0.05)
        finally:
            channel.close()


def final_value(endpoints: list[str]) -> int:
    deadline = time.monotonic() + 60
    while True:
        for endpoint in endpoints:
            with grpc.insecure_channel(endpoint) as channel:
                try:
                    got = rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=KEY), timeout=5)
                except grpc.RpcError:
                    continue
                return int(got.kvs[0].value) if got.kvs else 0
        if time.monotonic() > deadline:
            raise RuntimeError("no member answered the final read")
        time.sleep(0.5)


def measure(kind: str, extra: list[str], seconds: float, interval: float, clients: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix=f"faults-{kind}-") as tmp:
        cluster = ProcCluster(kind, Path(tmp), 3, extra_args=DEFAULT_TIMES + extra)
        try:
            cluster.start()
            endpoints = [m.endpoint for m in cluster.members]
            stop = threading.Event()
            counts = [0, 0, 0]
            lock = threading.Lock()
            threads = [
                threading.Thread(target=client, args=(endpoints, i, stop, counts, lock))
                for i in range(clients)
            ]
            for thread in threads:
                thread.start()
            kills = 0
            ends = time.monotonic() + seconds
            while (left := ends - time.monotonic()) > 0:
                time.sleep(min(interval, left))
                if time.monotonic() >= ends:
                    break
                victim = rng.choice(cluster.members)
                victim.kill()
                kills += 1
                victim.start(wait=False)
            stop.set()
            for thread in threads:
                thread.join(30)
            for member in cluster.members:
                member.wait_ready(60)
            cluster.wait_leader(60)
            final = final_value(endpoints)
        finally:
            cluster.stop()
    return Outcome(counts[0], counts[1], counts[2], final, kills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="also etcdpy with this many client workers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    variants = {"etcd": ("etcd", []), "etcdpy": ("etcdpy", [])}
    if args.workers:
        variants["etcdpy-workers"] = ("etcdpy", ["--experimental-client-workers", str(args.workers)])
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; 3 members, {args.clients} clients, "
        f"kill -9 every {args.interval:g} s for {args.seconds:g} s"
    )
    acked: dict[str, list[int]] = {name: [] for name in variants}
    for run in range(args.runs):
        for name, (kind, extra) in variants.items():
            outcome = measure(kind, extra, args.seconds, args.interval, args.clients, args.seed + run)
            acked[name].append(outcome.acknowledged)
            verdict = "LOST ACKNOWLEDGED WRITES" if outcome.lost else "none lost"
            print(
                f"run {run + 1} {name:15} acknowledged {outcome.acknowledged:6}  "
                f"unknown {outcome.unknown:4}  races lost {outcome.races_lost:6}  final {outcome.final:6}  "
                f"kills {outcome.kills}  {verdict}",
                flush=True,
            )
    reference = statistics.median(acked["etcd"])
    for name, values in acked.items():
        print(
            f"{name:15} acknowledged min {min(values)} median {statistics.median(values):.0f}; "
            f"median / etcd's {statistics.median(values) / reference:.2f} (target >= 0.7)"
        )


if __name__ == "__main__":
    main()
