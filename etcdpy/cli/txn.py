"""``txn``: read compares, success and failure requests from stdin, commit them atomically."""

from __future__ import annotations

import click

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import command_options
from etcdpy.cli.txn_grammar import read_compares, read_requests

TXN_HELP = """Txn processes all the requests in one transaction.

\b
Input (stdin), three sections each ended by a blank line:
  compares, e.g.   mod("key1") > "0"     val("key2") = "v"
  success requests (get, put, del), e.g.   put key1 "new value"
  failure requests (get, put, del), e.g.   get key1 --prefix
"""


@click.command("txn", help=TXN_HELP, short_help="Txn processes all the requests in one transaction")
@click.argument("args", nargs=-1, metavar="")
@click.option("-i", "--interactive", is_flag=True, help="Input transaction in interactive mode")
@command_options
@pass_state
def txn(state: CliState, args: tuple[str, ...], interactive: bool) -> None:
    """Run a transaction read from stdin."""
    if args:
        raise CliError(ExitCode.BAD_ARGS, "txn command does not accept argument")
    printer = state.printer()
    client = state.client()
    reader = click.get_binary_stream("stdin")

    def prompt(text: str) -> None:
        if interactive:
            state.output.line(text)
            state.output.flush()

    prompt("compares:")
    compares = read_compares(reader)
    prompt("success requests (get, put, del):")
    success = read_requests(reader)
    prompt("failure requests (get, put, del):")
    failure = read_requests(reader)
    response = client.send_txn(pb.TxnRequest(compare=compares, success=success, failure=failure))
    printer.txn(response)


def register(group: click.Group) -> None:
    """Add txn to the top-level group."""
    group.add_command(txn)
