"""etcdpy's command line: etcdctl's commands, flags, output and exit codes.

One click group (`cli`), one module per command group; the shared state (global
flags, output, client) lives in click's context object (`etcdpy.cli.context`).
"""

import sys

from etcdpy import grpcenv

# ``etcdpy server`` sets grpc's settings here, before the commands below import grpc.
grpcenv.apply_for_command_line(sys.argv)

from etcdpy.cli import (  # noqa: E402 (after the settings)
    alarm,
    auth,
    check,
    compaction,
    completion,
    defrag,
    elect,
    endpoint,
    kv,
    lease,
    lock,
    make_mirror,
    member,
    move_leader,
    role,
    snapshot,
    txn,
    user,
    version,
    watch,
)
from etcdpy.cli.app import cli, main  # noqa: E402 (after the settings)

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
    defrag,
    snapshot,
    make_mirror,
    check,
    completion,
    auth,
    user,
    role,
):
    _module.register(cli)

__all__ = ["cli", "main"]
