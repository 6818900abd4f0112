"""``endpoint health|status|hashkv``: per-endpoint checks, optionally over the whole cluster.

With ``--cluster`` the endpoints are the client URLs of every member (from
MemberList) instead of ``--endpoints``.  On a terminal, with no ``-w``,
``status`` shows a rich table marking the leader and learners
(`printers.terminal`); piped, it prints etcdctl's bytes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import click

from etcdpy.api.errors import ErrPermissionDenied, EtcdError
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.durations import format_duration_ns
from etcdpy.cli.errors import CliError, ExitCode, SilentExit
from etcdpy.cli.options import GoInt64, command_options
from etcdpy.cli.printers import EndpointHashKV, EndpointHealth, EndpointStatus, terminal
from etcdpy.client import Client

_CLUSTER_HELP = "use all endpoints from the cluster member list"


def cluster_option(func: click.decorators.FC) -> click.decorators.FC:
    """``--cluster``, accepted on the group and on each subcommand (a cobra persistent flag)."""
    return click.option("--cluster", is_flag=True, default=None, help=_CLUSTER_HELP)(func)


@click.group("endpoint", short_help="Endpoint related commands")
@cluster_option
@click.pass_context
def endpoint(ctx: click.Context, cluster: bool | None) -> None:
    """Endpoint related commands."""
    ctx.meta["etcdpy.endpoint.cluster"] = bool(cluster)


def _endpoints(state: CliState, cluster: bool | None) -> list[str]:
    ctx = click.get_current_context()
    if not (cluster or ctx.meta.get("etcdpy.endpoint.cluster")):
        return list(state.options.endpoints)
    try:
        members = state.client().member_list()
    except EtcdError as err:
        raise CliError(
            ExitCode.ERROR, f"failed to fetch endpoints from etcd cluster member list: {err.text}"
        ) from None
    return [url for m in members.members for url in m.clientURLs]


def _check_health(endpoint_text: str, client: Client) -> EndpointHealth:
    start = time.monotonic_ns()
    error = ""
    try:
        client.get("health")
    except ErrPermissionDenied:
        pass  # the request went through consensus: the member is healthy
    except EtcdError as err:
        error = err.text
    took = format_duration_ns(time.monotonic_ns() - start)
    return EndpointHealth(endpoint_text, health=not error, took=took, error=error)


@endpoint.command("health", short_help="Checks the healthiness of endpoints specified in `--endpoints` flag")
@cluster_option
@command_options
@pass_state
def health(state: CliState, cluster: bool | None) -> None:
    """Check the healthiness of endpoints specified in `--endpoints` flag."""
    printer = state.printer()
    endpoints = _endpoints(state, cluster)
    clients = [state.client([ep]) for ep in endpoints]  # one client per endpoint, as etcdctl
    with ThreadPoolExecutor(max_workers=max(len(endpoints), 1)) as pool:
        results = list(pool.map(_check_health, endpoints, clients))
    printer.endpoint_health(results)
    if any(r.error for r in results):
        raise CliError(ExitCode.ERROR, "unhealthy cluster")


@endpoint.command("status", short_help="Prints out the status of endpoints specified in `--endpoints` flag")
@cluster_option
@command_options
@pass_state
def status(state: CliState, cluster: bool | None) -> None:
    """Print out the status of endpoints specified in `--endpoints` flag.

    With -w simple: comma-separated endpoint, ID, version, db size, is leader,
    is learner, raft term, raft index, raft applied index, errors.
    """
    printer = state.printer()
    client = state.client()
    results, failed = [], False
    for ep in _endpoints(state, cluster):
        try:
            results.append(EndpointStatus(ep, client.status(ep)))
        except EtcdError as err:
            failed = True
            state.output.err_line(f"Failed to get the status of endpoint {ep} ({err.text})")
    if terminal.terminal_view_wanted(state.options, state.output):
        terminal.print_table(state.output, terminal.endpoint_status_table(results))
    else:
        printer.endpoint_status(results)
    if failed:
        raise SilentExit(ExitCode.ERROR)


@endpoint.command("hashkv", short_help="Prints the KV history hash for each endpoint in --endpoints")
@cluster_option
@click.option("--rev", type=GoInt64(), default=0, help="maximum revision to hash (default: all revisions)")
@command_options
@pass_state
def hashkv(state: CliState, cluster: bool | None, rev: int) -> None:
    """Print the KV history hash for each endpoint in --endpoints."""
    printer = state.printer()
    client = state.client()
    results: list[EndpointHashKV] = []
    last_error: EtcdError | None = None
    for ep in _endpoints(state, cluster):
        try:
            results.append(EndpointHashKV(ep, client.hash_kv(rev, ep)))
        except EtcdError as err:
            last_error = err
            state.output.err_line(f"Failed to get the hash of endpoint {ep} ({err.text})")
    printer.endpoint_hashkv(results)
    if last_error is not None:
        raise CliError(ExitCode.ERROR, last_error.text)


def register(group: click.Group) -> None:
    """Add the endpoint group to the top-level group."""
    group.add_command(endpoint)
