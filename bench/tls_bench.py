"""tls_bench: what TLS costs, on 3-member etcd 3.4 and etcdpy clusters, in one run, with ratios.

Four fresh clusters, one after the other (loopback ports, temp data dirs, etcd's default heartbeat
100 ms and election timeout 1 s), each killed before the next starts: etcd and etcdpy in plaintext,
then etcd and etcdpy with TLS on every client and peer link (client and peer certificates required,
the test PKI of tests/tlscerts.py).  On each, ``etcdctl check perf --load=m`` with every member as an
endpoint (60 s of rate-limited 1 KiB puts from 200 clients; the TLS runs present root's client
certificate through ``ETCDCTL_CACERT/CERT/KEY``).

Printed: etcdpy / etcd without and with TLS, then TLS / plaintext for each server.

Usage: ``python bench/tls_bench.py [--kind etcd|etcdpy] [--load s|m|l|xl]`` (``--load s``: a smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Figures, check_perf, report

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from cluster_support import ProcCluster
from tls_support import TLSCluster
from tlscerts import make_pki

DEFAULT_TIMES = ["--heartbeat-interval", "100", "--election-timeout", "1000"]  # etcd's defaults


def measure(kind: str, tls: bool, load: str) -> Figures:
    """check perf on a fresh 3-member cluster of `kind`, with TLS on every link or none."""
    with tempfile.TemporaryDirectory(prefix=f"tls-bench-{kind}-") as tmp:
        root = Path(tmp)
        cluster: ProcCluster
        env: dict[str, str] = {}
        if tls:
            pki = make_pki(root / "pki")
            cluster = TLSCluster(kind, root, 3, pki, DEFAULT_TIMES)
            env = {
                "ETCDCTL_CACERT": str(pki.ca),
                "ETCDCTL_CERT": str(pki.client_root.cert),
                "ETCDCTL_KEY": str(pki.client_root.key),
            }
        else:
            cluster = ProcCluster(kind, root, 3, extra_args=DEFAULT_TIMES)
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)  # check_perf's etcdctl inherits the environment
        try:
            cluster.start()
            endpoints = ",".join(m.client_url for m in cluster.members)
            result = check_perf(endpoints, load)
            if not result.passed:
                print(f"# {kind} tls={tls}:\n{result.output}", file=sys.stderr)
            return result.figures()
        finally:
            cluster.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kind", choices=("etcd", "etcdpy"), action="append", help="measure only this server (repeatable)"
    )
    parser.add_argument("--load", default="m", help="check perf's load: s, m (default), l, xl")
    args = parser.parse_args()
    kinds = args.kind or ["etcd", "etcdpy"]
    began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = os.getloadavg()
    plain = {kind: measure(kind, tls=False, load=args.load) for kind in kinds}
    secured = {f"{kind}-tls": measure(kind, tls=True, load=args.load) for kind in kinds}
    load_after = os.getloadavg()
    print(f"# {began}; load average (1, 5, 15 min) before {load_before}, after {load_after}")
    if len(kinds) == 2:
        print("\n## etcdpy / etcd, plaintext\n" + report(dict(plain)))
        print("\n## etcdpy / etcd, TLS on every link\n" + report(dict(secured)))
    for kind in kinds:
        print(
            f"\n## {kind}: TLS / plaintext\n"
            + report({kind: plain[kind], f"{kind}-tls": secured[f"{kind}-tls"]})
        )


if __name__ == "__main__":
    main()
