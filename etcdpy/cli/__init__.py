"""etcdpy's command line: etcdctl's commands, flags, output and exit codes.

One click group (`cli`), one module per command group; the shared state (global
flags, output, client) lives in click's context object (`etcdpy.cli.context`).
"""

from etcdpy.cli import (
    alarm,
    compaction,
    elect,
    endpoint,
    kv,
    lease,
    lock,
    member,
    move_leader,
    txn,
    version,
    watch,
)
from etcdpy.cli.app import cli, main

for _module in (
    kv,
    txn,
    compaction,
    endpoint,
    member,
    move_leader,
    lease,
    watch,
    version,
    alarm,
    lock,
    elect,
):
    _module.register(cli)

__all__ = ["cli", "main"]
