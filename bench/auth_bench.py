"""auth_bench: what auth costs, etcd 3.4 and etcdpy in one run, ratios printed.

For each server kind, two fresh one-member servers: auth off, and auth on with a user
``perf`` whose only role grants readwrite on check perf's prefix (``/etcdctl-check-perf/``).
Each runs ``etcdctl check perf --load=m`` (60 s of rate-limited 1 KiB puts from 200 clients;
with auth on, as ``--user perf:...``, given through ``ETCDCTL_USER``), so every put carries a
token, is checked by the serving member and again at apply.

Usage: ``python bench/auth_bench.py``.  Columns: each server with auth off and on; ratios etcdpy/etcd
(auth off, auth on) and on/off (each kind).  Throughput: higher is better; latency: lower is better.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from benchlib import Figures, check_perf
from procs import ETCDCTL_BIN, ServerProcess

PREFIX = "/etcdctl-check-perf/"
USER = "perf:perf-password"


def enable_auth(endpoint: str) -> None:
    """root, and perf with readwrite on the check perf prefix; auth on."""
    assert ETCDCTL_BIN is not None, "etcdctl not installed"
    steps = [
        ["user", "add", "root:root-password"],
        ["user", "grant-role", "root", "root"],
        ["role", "add", "perf"],
        ["role", "grant-permission", "perf", "readwrite", PREFIX, "--prefix"],
        ["user", "add", USER],
        ["user", "grant-role", "perf", "perf"],
        ["auth", "enable"],
    ]
    for step in steps:
        subprocess.run([ETCDCTL_BIN, f"--endpoints={endpoint}", *step], check=True, capture_output=True)


def measure(kind: str, auth: bool) -> Figures:
    with tempfile.TemporaryDirectory(prefix=f"auth-{kind}-") as tmp:
        server = ServerProcess(kind, Path(tmp) / "data").start()
        previous = os.environ.get("ETCDCTL_USER")
        try:
            if auth:
                enable_auth(server.endpoint)
                os.environ["ETCDCTL_USER"] = USER
            return check_perf(server.endpoint).figures()
        finally:
            if previous is None:
                os.environ.pop("ETCDCTL_USER", None)
            else:
                os.environ["ETCDCTL_USER"] = previous
            server.stop()


def ratio(a: float | str, b: float | str) -> str:
    if isinstance(a, str) or isinstance(b, str) or not b:
        return ""
    return f"{a / b:.2f}"


def main() -> None:
    columns = {(kind, auth): measure(kind, auth) for kind in ("etcd", "etcdpy") for auth in (False, True)}
    header = [
        "metric",
        "etcd off",
        "etcd on",
        "etcdpy off",
        "etcdpy on",
        "py/etcd off",
        "py/etcd on",
        "etcd on/off",
        "etcdpy on/off",
    ]
    rows = [header]
    for metric in columns["etcd", False]:
        values = [columns[kind, auth][metric] for kind in ("etcd", "etcdpy") for auth in (False, True)]
        eoff, eon, poff, pon = values
        cells = [v if isinstance(v, str) else f"{v:.3f}" for v in values]
        rows.append([metric, *cells, ratio(poff, eoff), ratio(pon, eon), ratio(eon, eoff), ratio(pon, poff)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows))


if __name__ == "__main__":
    main()
