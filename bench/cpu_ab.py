"""cpu_ab: CPU per operation of two etcdpy source trees, one member each, loaded at the same time.

Run one after the other, two variants see different machine loads (on the shared machine the spread
between runs is larger than most single cuts).  Here both members run at once, each with its own
load generator process sending the same number of operations from the same number of clients, so
both see the same load; each round prints both figures (utime+stime of every thread of each member,
from /proc, as `cpu_per_write.py`).

Usage: ``python bench/cpu_ab.py BASE_TREE [OTHER_TREE] [--op put|srange] [--ops N] [--rounds N]``;
a tree is a directory holding an ``etcdpy`` package (e.g. ``git archive <commit> | tar -x -C DIR``);
OTHER_TREE defaults to this checkout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from pathlib import Path

from benchlib import REPO
from cpu_per_write import _put_in_process, put_many, threads_cpu
from procs import ServerProcess


def start(tree: Path, data_dir: Path) -> ServerProcess:
    """A fresh one-member etcdpy running the code of `tree`."""
    server = ServerProcess("etcdpy", data_dir)
    # The child inherits these when it starts.  PYTHONSAFEPATH: `python -m etcdpy` would otherwise put
    # the working directory first on its path, and started from a checkout it would run that checkout.
    wanted = {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        return server.start()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("other", type=Path, nargs="?", default=REPO)
    parser.add_argument("--op", choices=("put", "srange"), default="put")
    parser.add_argument("--ops", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = [args.base.resolve(), args.other.resolve()]
    for tree in trees:
        if not (tree / "etcdpy" / "__init__.py").exists():
            parser.error(f"{tree} holds no etcdpy package")
    print(f"# {args.ops} {args.op} from {args.clients} clients to each member at once; CPU per op")
    with tempfile.TemporaryDirectory(prefix="cpu-ab-") as tmp:
        servers: list[ServerProcess] = []
        try:
            for n, tree in enumerate(trees):
                servers.append(start(tree, Path(tmp) / f"m{n}"))
            for server in servers:
                put_many(server.endpoint, 2000, args.clients)  # warm up; srange reads bench/1
            pids = [s.proc.pid for s in servers if s.proc is not None]
            spawn = multiprocessing.get_context("spawn")
            for round_ in range(args.rounds):
                before = [sum(threads_cpu(pid).values()) for pid in pids]
                with spawn.Pool(len(servers)) as pool:
                    loads = [
                        pool.apply_async(_put_in_process, (s.endpoint, args.ops, args.clients, args.op))
                        for s in servers
                    ]
                    seconds = [load.get() for load in loads]
                after = [sum(threads_cpu(pid).values()) for pid in pids]
                cells = (
                    f"{tree}: {1e6 * (a - b) / args.ops:.0f} µs ({args.ops / s:.0f}/s)"
                    for tree, a, b, s in zip(trees, after, before, seconds, strict=True)
                )
                print(f"round {round_} load {os.getloadavg()[0]:.1f}  " + "   ".join(cells))
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
