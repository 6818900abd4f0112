"""snapshot_bench: snapshot save and restore of a large keyspace, etcd 3.4 and etcdpy in one run.

``python bench/snapshot_bench.py [--keys N] [--value-size B] [--kind etcd|etcdpy]``

For each server (a fresh one-member etcd, then a fresh one-member etcdpy, loopback ports,
temp data dirs): load N keys of B bytes (default a million of 1 KiB, about 1 GB, written
as txns of 100 puts), then

- ``snapshot save``: the time of ``etcdctl snapshot save`` (the same client for both) and the
  growth of the server's anonymous RSS (its heap: mmapped files excluded) while it streams, sampled
  every 20 ms from /proc;
- ``snapshot restore`` of that file by the server's own tool (``etcdctl snapshot restore`` for
  etcd, ``etcdpy snapshot restore`` for etcdpy): time and the restoring process's peak RSS
  (``wait4``'s ru_maxrss, which counts the pages of the mmapped snapshot it read, for both);
- ``snapshot status`` by the same tools: time (etcdpy's is slow without the ``crc32c`` package).

Figures go in one table with the ratio etcdpy/etcd; the header gives the load average before
and after (the two-core machine is shared: figures move with it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchlib import REPO, compare_kinds, group_memory_kib, keyspace_arguments, load_keys

sys.path.insert(0, str(REPO / "tests"))
from procs import ETCDCTL_BIN, ServerProcess


def timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Run argv; (seconds, peak RSS in MB of that process)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return seconds, usage.ru_maxrss // 1024


def measure(kind: str, keys: int, value_size: int, root: Path) -> dict[str, float | str]:
    assert ETCDCTL_BIN is not None, "the reference etcdctl is not installed"
    server = ServerProcess(kind, root / f"{kind}.data", extra_args=["--quota-backend-bytes", str(8 << 30)])
    server.start(timeout=60)
    figures: dict[str, float | str] = {}
    try:
        started = time.monotonic()
        load_keys(server.endpoint, keys, value_size)
        figures["load s"] = time.monotonic() - started
        assert server.proc is not None
        baseline = group_memory_kib(server.proc.pid, "RssAnon")
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.02):
                peak = max(peak, group_memory_kib(server.proc.pid, "RssAnon"))  # type: ignore[union-attr]

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        snapshot = root / f"{kind}.db"
        seconds, _ = timed(
            [ETCDCTL_BIN, "--endpoints", server.endpoint, "snapshot", "save", str(snapshot)], root
        )
        done.set()
        sampler.join()
        figures["save s"] = seconds
        figures["save server anon RSS growth MB"] = (peak - baseline) / 1024
        figures["snapshot MB"] = snapshot.stat().st_size / 1e6
    finally:
        server.stop()
    tool = [ETCDCTL_BIN] if kind == "etcd" else [sys.executable, "-m", "etcdpy"]
    seconds, peak_mb = timed(
        [*tool, "snapshot", "restore", str(snapshot), "--data-dir", str(root / "restored")], root
    )
    figures["restore s"] = seconds
    figures["restore peak RSS MB"] = float(peak_mb)
    seconds, _ = timed([*tool, "snapshot", "status", str(snapshot)], root)
    figures["status s"] = seconds
    return figures


def main() -> None:
    args = keyspace_arguments(__doc__).parse_args()
    compare_kinds("snapshot_bench", args, lambda kind, root: measure(kind, args.keys, args.value_size, root))


if __name__ == "__main__":
    main()
