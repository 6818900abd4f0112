"""``check perf`` and ``check datascale``: etcdctl 3.4's load checks, their criteria, lines and exit codes.

perf: puts of 256-byte random keys with 1 KiB values under ``--prefix`` at the
load's rate (a token bucket of one, as Go's rate.Limiter) for 60 seconds from
the load's clients, then the prefix is deleted.  It passes when no put failed,
the throughput is above 90 % of the rate, the slowest put took at most 0.5 s
and the standard deviation is at most 0.1 s (etcdctl's check.go).

datascale: as many puts as the load says (512-byte keys, 512-byte values) as
fast as the clients go, the server's resident memory read from its
``/metrics`` (process_resident_memory_bytes) before and after.

Loads (limit, clients): perf s 150/s 50, m 1000/s 200, l 8000/s 500, xl 15000/s
1000; datascale s 10k 50, m 100k 200, l 1M 500, xl 3M 1000.  etcdctl opens one
connection per client; here the clients are threads sharing a few connections
(at most `MAX_WORKERS` threads: a Python process is one core).  A progress bar
(rich, on stderr) shows only when stdout is a terminal; piped, the output is
etcdctl's lines.  Beyond etcdctl: the first request (the check that the prefix
is empty) waits the command timeout, not the whole duration, on a cluster that
does not answer.
"""

from __future__ import annotations

import functools
import http.client
import math
import queue
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.context import CliState, pass_state
from etcdpy.cli.errors import CliError, ExitCode, SilentExit
from etcdpy.cli.options import GlobalOptions, command_options
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.client import Client

ALIASES = {
    "s": "s",
    "small": "s",
    "m": "m",
    "medium": "m",
    "l": "l",
    "large": "l",
    "xl": "xl",
    "xLarge": "xl",
}
MAX_WORKERS = 64  # threads issuing puts, whatever the load's client count
CONNECTIONS = 4  # clients (channels) the threads share
MAINTENANCE_TIMEOUT = 30.0  # the deletion, compaction and defragmentation after a check (etcdctl's 30 s)


@dataclass(frozen=True)
class PerfLoad:
    limit: int  # puts per second
    clients: int
    duration: int  # seconds


@dataclass(frozen=True)
class DatascaleLoad:
    limit: int  # puts in all
    kv_size: int
    clients: int


PERF_LOADS = {
    "s": PerfLoad(150, 50, 60),
    "m": PerfLoad(1000, 200, 60),
    "l": PerfLoad(8000, 500, 60),
    "xl": PerfLoad(15000, 1000, 60),
}
DATASCALE_LOADS = {
    "s": DatascaleLoad(10000, 1024, 50),
    "m": DatascaleLoad(100000, 1024, 200),
    "l": DatascaleLoad(1000000, 1024, 500),
    "xl": DatascaleLoad(3000000, 1024, 1000),
}


@dataclass
class Stats:
    """pkg/report's statistics of the puts: latencies of the successes, errors by text, the wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    total: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.total if self.total > 0 else 0.0

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)

    @property
    def stddev(self) -> float:
        if not self.latencies:
            return math.nan  # Go divides by zero here too
        average = sum(self.latencies) / len(self.latencies)
        return math.sqrt(sum((lat - average) ** 2 for lat in self.latencies) / len(self.latencies))


def random_key(prefix: bytes, size: int, rng: random.Random) -> bytes:
    """``prefix`` + a zero-padded ``size``-byte buffer starting with a random int63's varint (as Go's)."""
    value = rng.randrange(2**63 - 1)
    zigzag = value << 1  # binary.PutVarint of a non-negative number
    varint = bytearray()
    while zigzag >= 0x80:
        varint.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    varint.append(zigzag)
    return prefix + bytes(varint) + bytes(size - len(varint))


class TokenBucket:
    """golang.org/x/time/rate's Limiter with a burst of one: one token every 1/rate seconds."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self._next = clock()

    def reserve(self, deadline: float) -> float | None:
        """The time the next token is due, or None if that is past ``deadline`` (then nothing is taken)."""
        due = max(self._next, self.clock())
        if due > deadline:
            return None
        self._next = due + self.interval
        return due


_STOP = object()


def run_puts(
    clients: list[Client], requests: Iterator[pb.PutRequest], workers: int, on_result: Callable[[], None]
) -> Stats:
    """Send ``requests`` from ``workers`` threads (a queue of as many in between) and gather the stats."""
    stats = Stats()
    lock = threading.Lock()
    work: queue.Queue[Any] = queue.Queue(maxsize=workers)

    def worker(client: Client) -> None:
        while (request := work.get()) is not _STOP:
            start = time.monotonic()
            error = None
            try:
                client.send_put(request, timeout=MAINTENANCE_TIMEOUT)
            except EtcdError as err:
                error = err.text
            took = time.monotonic() - start
            with lock:
                if error is None:
                    stats.latencies.append(took)
                else:
                    stats.errors[error] += 1
            on_result()

    threads = [
        threading.Thread(target=worker, args=(clients[i % len(clients)],), daemon=True)
        for i in range(workers)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for request in requests:
        work.put(request)
    for _ in threads:
        work.put(_STOP)
    for thread in threads:
        thread.join()
    stats.total = time.monotonic() - start
    return stats


def paced(make: Callable[[], pb.PutRequest], rate: float, seconds: float) -> Iterator[pb.PutRequest]:
    """Requests at ``rate`` per second for ``seconds`` (the last one no later than the end)."""
    bucket = TokenBucket(rate)
    deadline = time.monotonic() + seconds
    while (due := bucket.reserve(deadline)) is not None:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield make()


class _Bar:
    """A rich progress bar on stderr while the load runs, only when stdout is a terminal."""

    def __init__(self, state: CliState, description: str, total: float) -> None:
        self._progress: Any = None
        if state.output.is_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._progress = Progress(
                description,
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)


@click.group("check", short_help="commands for checking properties of the etcd cluster")
def check() -> None:
    """Commands for checking properties of the etcd cluster."""


WORKLOADS = "s(small), m(medium), l(large), xl(xLarge)"
COMPACT_HELP = "Compact storage with last revision after test is finished."
DEFRAG_HELP = "Defragment storage after test is finished."


def load_options(kind: str, prefix: str) -> Callable[[Any], Any]:
    """--load, --prefix (default ``prefix``), --auto-compact and --auto-defrag for the ``kind`` check."""
    load_help = (
        f"The {kind} check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"
    )
    options = [
        click.option("--load", default="s", help=load_help),
        click.option("--prefix", default=prefix, help=f"The prefix for writing the {kind} check's keys."),
        click.option("--auto-compact", is_flag=True, help=COMPACT_HELP),
        click.option("--auto-defrag", is_flag=True, help=DEFRAG_HELP),
    ]

    def decorate(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _model(load: str) -> str:
    model = ALIASES.get(load)
    if model is None:
        raise CliError(ExitCode.BAD_FEATURE, f"unknown load option {load}")
    return model


def _clients(state: CliState, count: int) -> list[Client]:
    first = state.client()
    return [first, *(state.client(list(state.options.endpoints)) for _ in range(min(count, CONNECTIONS) - 1))]


def _check_prefix_empty(client: Client, prefix: str) -> None:
    response = client.get(prefix, prefix=True, limit=1)
    if response.kvs:
        raise CliError(
            ExitCode.INVALID_INPUT,
            f"prefix {go_quote(prefix)} has keys. Delete with etcdctl del --prefix {prefix} first",
        )


def _clean_up(state: CliState, client: Client, prefix: str, compact: bool, defrag: bool) -> None:
    """Delete the check's keys; compact and defragment as asked, saying so as etcdctl does."""
    deleted = client.delete(prefix, prefix=True, timeout=MAINTENANCE_TIMEOUT)
    out = state.output
    if compact:
        revision = deleted.header.revision
        out.line(f"Compacting with revision {revision}")
        out.flush()
        client.compact(revision, physical=True, timeout=MAINTENANCE_TIMEOUT)
        out.line(f"Compacted with revision {revision}")
    if defrag:
        for endpoint in state.options.endpoints:
            out.line(f"Defragmenting {go_quote(endpoint)}")
            out.flush()
            client.defragment(endpoint, timeout=MAINTENANCE_TIMEOUT)
            out.line(f"Defragmented {go_quote(endpoint)}")


def _error_lines(state: CliState, stats: Stats) -> None:
    state.output.line("FAIL: too many errors")
    for text, count in stats.errors.items():
        state.output.line(f"FAIL: ERROR({text}) -> {count}")


@check.command("perf", short_help="Check the performance of the etcd cluster")
@load_options("performance", "/etcdctl-check-perf/")
@command_options
@pass_state
def perf(state: CliState, load: str, prefix: str, auto_compact: bool, auto_defrag: bool) -> None:
    """Check the performance of the etcd cluster."""
    cfg = PERF_LOADS[_model(load)]
    clients = _clients(state, cfg.clients)
    _check_prefix_empty(clients[0], prefix)
    rng = random.Random()
    value = bytes(1024)
    key_prefix = prefix.encode()

    def make() -> pb.PutRequest:
        return pb.PutRequest(key=random_key(key_prefix, 256, rng), value=value)

    with _Bar(state, "check perf", cfg.duration) as bar:
        ticker = _Ticker(bar, cfg.duration)
        stats = run_puts(
            clients, paced(make, cfg.limit, cfg.duration), min(cfg.clients, MAX_WORKERS), lambda: None
        )
        ticker.stop()
    _clean_up(state, clients[0], prefix, auto_compact, auto_defrag)
    ok = True
    out = state.output
    if stats.errors:
        _error_lines(state, stats)
        ok = False
    if stats.rps / cfg.limit <= 0.9:
        out.line(f"FAIL: Throughput too low: {int(stats.rps) + 1} writes/s")
        ok = False
    else:
        out.line(f"PASS: Throughput is {int(stats.rps) + 1} writes/s")
    if stats.slowest > 0.5:
        out.line(f"Slowest request took too long: {stats.slowest:f}s")
        ok = False
    else:
        out.line(f"PASS: Slowest request took {stats.slowest:f}s")
    stddev = "NaN" if math.isnan(stats.stddev) else f"{stats.stddev:f}"  # Go's %f of NaN
    if stats.stddev > 0.1:
        out.line(f"Stddev too high: {stddev}s")
        ok = False
    else:
        out.line(f"PASS: Stddev is {stddev}s")
    out.line("PASS" if ok else "FAIL")
    if not ok:
        raise SilentExit(ExitCode.ERROR)


class _Ticker:
    """Advances the bar once a second for the check's duration (etcdctl's bar counts seconds)."""

    def __init__(self, bar: _Bar, seconds: int) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bar, seconds), daemon=True)
        self._thread.start()

    def _run(self, bar: _Bar, seconds: int) -> None:
        for _ in range(seconds):
            if self._stopped.wait(1.0):
                return
            bar.advance()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def metrics_tls(options: GlobalOptions) -> ssl.SSLContext:
    """The TLS of an https:// endpoint's /metrics: the client's certificate, CA and skip-verify flags."""
    context = ssl.create_default_context(cafile=options.cacert or None)
    if options.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert:
        context.load_cert_chain(options.cert, options.key or None)
    return context


def resident_memory(endpoint: str, tls: Callable[[], ssl.SSLContext]) -> tuple[float, str]:
    """process_resident_memory_bytes from the endpoint's /metrics, or 0 and etcdctl's line saying why.

    No HTTP proxy is used: the endpoint is a member the client reaches directly.
    """
    host = endpoint if endpoint.startswith(("http://", "https://")) else "http://" + endpoint
    url = host + "/metrics"
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    try:
        if url.startswith("https://"):
            handlers.append(urllib.request.HTTPSHandler(context=tls()))
        opener = urllib.request.build_opener(*handlers)
        with opener.open(url, timeout=MAINTENANCE_TIMEOUT) as response:
            body = response.read().decode("utf-8", "replace")
    except ssl.SSLError as err:
        return 0.0, f"client certificate error: {err}"
    except http.client.BadStatusLine as err:  # an HTTP/2-only port answers with its settings frame
        line = str(err.args[0] if err.args else "").rstrip("\r\n").encode("latin-1")
        reason = f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {go_quote(line)}"
        return 0.0, f'fetch error: Get "{url}": {reason}'
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        cause: object = err.reason if isinstance(err, urllib.error.URLError) else err
        if isinstance(cause, ConnectionRefusedError):
            cause = f"dial tcp {urllib.parse.urlsplit(url).netloc}: connect: connection refused"
        return 0.0, f'fetch error: Get "{url}": {cause}'
    name = "process_resident_memory_bytes"
    for line in body.split("\n"):
        if line.startswith(name):
            text = line[len(name) :].strip()
            try:
                return float(text), ""
            except ValueError:
                return 0.0, f'parse error: strconv.ParseFloat: parsing "{text}": invalid syntax'
    return 0.0, f"could not find: {name}"


@check.command(
    "datascale",
    short_help="Check the memory usage of holding data for different workloads on a given server endpoint.",
    help="If no endpoint is provided, localhost will be used. "
    "If multiple endpoints are provided, first endpoint will be used.",
)
@load_options("datascale", "/etcdctl-check-datascale/")
@command_options
@pass_state
def datascale(state: CliState, load: str, prefix: str, auto_compact: bool, auto_defrag: bool) -> None:
    cfg = DATASCALE_LOADS[_model(load)]
    clients = _clients(state, cfg.clients)
    _check_prefix_empty(clients[0], prefix)
    out = state.output
    endpoint = state.options.endpoints[0]
    tls = functools.partial(metrics_tls, state.options)
    before, why = resident_memory(endpoint, tls)
    if before == 0:
        _memory_failure(state, why, "before")
    out.line(
        f"Start data scale check for work load [{cfg.limit} key-value pairs, {cfg.kv_size} bytes per "
        f"key-value, {cfg.clients} concurrent clients]."
    )
    out.flush()
    rng = random.Random()
    value = bytes(512)
    key_prefix = prefix.encode()
    requests = (pb.PutRequest(key=random_key(key_prefix, 512, rng), value=value) for _ in range(cfg.limit))
    with _Bar(state, "check datascale", cfg.limit) as bar:
        stats = run_puts(clients, requests, min(cfg.clients, MAX_WORKERS), bar.advance)
    after, why = resident_memory(endpoint, tls)
    if after == 0:
        _memory_failure(state, why, "after")
    _clean_up(state, clients[0], prefix, auto_compact, auto_defrag)
    if stats.errors:
        _error_lines(state, stats)
        raise SilentExit(ExitCode.ERROR)
    used = (after - before) / (1024 * 1024)
    out.line(f"PASS: Approximate system memory used : {used:.2f} MB.")


def _memory_failure(state: CliState, why: str, when: str) -> None:
    state.output.line(why)
    state.output.line(f"FAIL: Could not read process_resident_memory_bytes {when} the put operations.")
    raise SilentExit(ExitCode.ERROR)


def register(group: click.Group) -> None:
    """Add the check group to the top-level group."""
    group.add_command(check)
