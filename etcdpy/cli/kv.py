"""``put``, ``get`` and ``del``: the KV commands, with etcdctl's argument rules.

The ``*_request`` builders turn a command's arguments into the wire request (or
etcdctl's error); the txn grammar reuses them for its put/get/del lines.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO

import click

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import GoInt64, command_options
from etcdpy.client import requests as rq
from etcdpy.client.requests import SortOrder, SortTarget

_HEX = re.compile(r"[+-]?[0-9a-fA-F]+")
_SORT_TARGETS = {
    "CREATE": SortTarget.CREATE,
    "KEY": SortTarget.KEY,
    "MODIFY": SortTarget.MOD,
    "VALUE": SortTarget.VALUE,
    "VERSION": SortTarget.VERSION,
}


def arg_bytes(text: str) -> bytes:
    """A command-line argument as the bytes the shell passed."""
    return os.fsencode(text)


def parse_lease(text: str) -> int:
    """A lease ID in hex, as etcdctl's ``--lease`` (strconv.ParseInt base 16)."""
    if not _HEX.fullmatch(text):
        raise CliError(
            ExitCode.BAD_ARGS,
            f'bad lease ID (strconv.ParseInt: parsing "{text}": invalid syntax), expecting ID in Hex',
        )
    value = int(text, 16)
    if not -(2**63) <= value < 2**63:
        raise CliError(
            ExitCode.BAD_ARGS,
            f'bad lease ID (strconv.ParseInt: parsing "{text}": value out of range), expecting ID in Hex',
        )
    return value


def put_request(
    args: tuple[str, ...],
    *,
    lease: str = "0",
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
    stdin: BinaryIO | None = None,
) -> pb.PutRequest:
    """``put <key> [value]``: the value comes from stdin when not given (unless --ignore-value)."""
    usage = "put command needs 1 argument and input from stdin or 2 arguments"
    if not args:
        raise CliError(ExitCode.BAD_ARGS, usage)
    if ignore_value and len(args) > 1:
        raise CliError(ExitCode.BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set")
    value = b""
    if not ignore_value:
        if len(args) > 1:
            value = arg_bytes(args[1])
        else:
            value = stdin.read() if stdin is not None else b""
            if not value:
                raise CliError(ExitCode.BAD_ARGS, usage)
    return rq.put_request(
        arg_bytes(args[0]),
        value,
        lease=parse_lease(lease),
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def _check_range_args(command: str, args: tuple[str, ...], prefix: bool, from_key: bool) -> None:
    if not args:
        raise CliError(
            ExitCode.BAD_ARGS,
            f"{command} command needs one argument as key and an optional argument as range_end",
        )
    if prefix and from_key:
        raise CliError(
            ExitCode.BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one"
        )


def _too_many() -> CliError:
    return CliError(
        ExitCode.BAD_ARGS,
        "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
    )


def range_request(
    args: tuple[str, ...],
    *,
    consistency: str = "l",
    order: str = "",
    sort_by: str = "",
    limit: int = 0,
    prefix: bool = False,
    from_key: bool = False,
    rev: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
) -> pb.RangeRequest:
    """``get <key> [range_end]`` with etcdctl's checks, in etcdctl's order."""
    _check_range_args("get", args, prefix, from_key)
    if keys_only and count_only:
        raise CliError(
            ExitCode.INVALID_INPUT,
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        )
    if consistency not in ("l", "s"):
        raise CliError(ExitCode.BAD_FEATURE, f'unknown consistency flag "{consistency}"')
    if len(args) > 1 and (prefix or from_key):
        raise _too_many()
    sort_order = {"": SortOrder.NONE, "ASCEND": SortOrder.ASCEND, "DESCEND": SortOrder.DESCEND}.get(
        order.upper()
    )
    if sort_order is None:
        raise CliError(ExitCode.BAD_FEATURE, f"bad sort order {order}")
    sort_target = SortTarget.KEY if sort_by == "" else _SORT_TARGETS.get(sort_by.upper())
    if sort_target is None:
        raise CliError(ExitCode.BAD_FEATURE, f"bad sort target {sort_by}")
    return rq.range_request(
        arg_bytes(args[0]),
        arg_bytes(args[1]) if len(args) > 1 else None,
        prefix=prefix,
        from_key=from_key,
        limit=limit,
        revision=rev,
        sort_order=sort_order,
        sort_target=sort_target,
        serializable=consistency == "s",
        keys_only=keys_only,
        count_only=count_only,
    )


def delete_request(
    args: tuple[str, ...], *, prefix: bool = False, prev_kv: bool = False, from_key: bool = False
) -> pb.DeleteRangeRequest:
    """``del <key> [range_end]`` with etcdctl's checks."""
    _check_range_args("del", args if len(args) <= 2 else (), prefix, from_key)
    if len(args) > 1 and (prefix or from_key):
        raise _too_many()
    return rq.delete_request(
        arg_bytes(args[0]),
        arg_bytes(args[1]) if len(args) > 1 else None,
        prefix=prefix,
        from_key=from_key,
        prev_kv=prev_kv,
    )


PUT_HELP = """Puts the given key into the store.

\b
When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:
  $ put <key> -- <value>
  $ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not
specified, this command reads the value from standard input: `cat file | put <key>`
stores the content of the file under <key>.
"""


@click.command("put", help=PUT_HELP, short_help="Puts the given key into the store")
@click.argument("args", nargs=-1, metavar="<key> [<value>]")
@click.option(
    "--lease", default="0", show_default=True, help="lease ID (in hexadecimal) to attach to the key"
)
@click.option("--prev-kv", is_flag=True, help="return the previous key-value pair before modification")
@click.option("--ignore-value", is_flag=True, help="updates the key using its current value")
@click.option("--ignore-lease", is_flag=True, help="updates the key using its current lease")
@click.option(
    "--ttl",
    type=GoInt64(),
    default=0,
    help="grant a lease of this many seconds and attach the key to it (beyond etcdctl)",
)
@command_options
@pass_state
def put(
    state: CliState,
    args: tuple[str, ...],
    lease: str,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
    ttl: int,
) -> None:
    """Put the given key into the store."""
    if ttl and (lease != "0" or ignore_lease):
        raise CliError(ExitCode.BAD_ARGS, "`--ttl` cannot be combined with `--lease` or `--ignore-lease`")
    request = put_request(
        args,
        lease=lease,
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
        stdin=click.get_binary_stream("stdin"),
    )
    printer = state.printer()
    client = state.client()
    if ttl <= 0:
        printer.put(client.send_put(request))
        return
    request.lease = client.lease_grant(ttl).ID
    try:
        response = client.send_put(request)
    except EtcdError:
        client.lease_revoke(request.lease)  # nothing is attached to it: do not leave it behind
        raise
    printer.put(response)


@click.command("get", short_help="Gets the key or a range of keys")
@click.argument("args", nargs=-1, metavar="<key> [range_end]")
@click.option("--consistency", default="l", show_default=True, help="Linearizable(l) or Serializable(s)")
@click.option("--order", default="", help="Order of results; ASCEND or DESCEND (ASCEND by default)")
@click.option("--sort-by", default="", help="Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION")
@click.option("--limit", type=GoInt64(), default=0, help="Maximum number of results")
@click.option("--prefix", is_flag=True, help="Get keys with matching prefix")
@click.option(
    "--from-key",
    is_flag=True,
    help="Get keys that are greater than or equal to the given key using byte compare",
)
@click.option("--rev", type=GoInt64(), default=0, help="Specify the kv revision")
@click.option("--keys-only", is_flag=True, help="Get only the keys")
@click.option("--count-only", is_flag=True, help="Get only the count (fields output only)")
@click.option(
    "--print-value-only", is_flag=True, help='Only write values when using the "simple" output format'
)
@command_options
@pass_state
def get(
    state: CliState,
    args: tuple[str, ...],
    consistency: str,
    order: str,
    sort_by: str,
    limit: int,
    prefix: bool,
    from_key: bool,
    rev: int,
    keys_only: bool,
    count_only: bool,
    print_value_only: bool,
) -> None:
    """Get the key or a range of keys [key, range_end)."""
    request = range_request(
        args,
        consistency=consistency,
        order=order,
        sort_by=sort_by,
        limit=limit,
        prefix=prefix,
        from_key=from_key,
        rev=rev,
        keys_only=keys_only,
        count_only=count_only,
    )
    printer = state.printer()
    response = state.client().send_range(request)
    if count_only and printer.name != "fields":
        raise CliError(ExitCode.BAD_ARGS, "--count-only is only for `--write-out=fields`")
    if print_value_only:
        if printer.name != "simple":
            raise CliError(ExitCode.BAD_ARGS, "print-value-only is only for `--write-out=simple`")
        printer.value_only = True
    printer.get(response)


@click.command("del", short_help="Removes the specified key or range of keys [key, range_end)")
@click.argument("args", nargs=-1, metavar="<key> [range_end]")
@click.option("--prefix", is_flag=True, help="delete keys with matching prefix")
@click.option("--prev-kv", is_flag=True, help="return deleted key-value pairs")
@click.option(
    "--from-key",
    is_flag=True,
    help="delete keys that are greater than or equal to the given key using byte compare",
)
@command_options
@pass_state
def delete(state: CliState, args: tuple[str, ...], prefix: bool, prev_kv: bool, from_key: bool) -> None:
    """Remove the specified key or range of keys [key, range_end)."""
    request = delete_request(args, prefix=prefix, prev_kv=prev_kv, from_key=from_key)
    printer = state.printer()
    printer.delete(state.client().send_delete(request))


def register(group: click.Group) -> None:
    """Add put, get and del to the top-level group."""
    for command in (put, get, delete):
        group.add_command(command)
