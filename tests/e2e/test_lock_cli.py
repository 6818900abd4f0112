"""``etcdpy lock`` as real processes: exclusion (etcdctl lock too), fencing, loss, timeouts, etcdctl's output.

Holders run a slow read-modify-write of a counter file and log the interval
they held the lock; the count must be exact and no two intervals may overlap,
with etcdctl holders mixed in and with a cluster leader killed midway.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_tools import LOCK_KEY, Running, lease_of, leases, queued, run_tool
from cluster_support import running_cluster
from procs import ServerProcess, without_zap_lines

from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client, CompareResult, CompareTarget, compare, op_put
from etcdpy.client.requests import put_request

# Read the counter, wait, write it back plus one; log "start end rev tool" in nanoseconds.
INCREMENT = (
    'start=$(date +%s%N); n=$(cat "$1"); sleep 0.02; echo $((n + 1)) > "$1"; '
    'end=$(date +%s%N); echo "$start $end ${ETCD_LOCK_REV:-0} $2" >> "$3"'
)
COMMANDS = 50
PARALLEL = 16


# -- mutual exclusion


def run_increments(endpoints: str, work: Path, name: str, on_progress: threading.Event | None = None) -> int:
    """Run COMMANDS locked increments, PARALLEL at a time, every fourth under etcdctl; how many succeeded.

    A lock that fails (its member died under it) is run again, as a script
    would, and its error kept in ``work/failures``; ``on_progress`` is set once
    a third are done.
    """
    work.mkdir()
    counter, log = work / "counter", work / "log"
    counter.write_text("0\n")
    log.write_text("")
    done = [0]
    lock = threading.Lock()

    def one(index: int) -> int:
        tool = "etcdctl" if index % 4 == 0 else "etcdpy"
        for _ in range(5):
            result = run_tool(
                tool, endpoints, "lock", "--ttl", "5", name, "--", "sh", "-c", INCREMENT, "sh",
                str(counter), tool, str(log), timeout=120,
            )  # fmt: skip
            if result.returncode == 0:
                break
            with lock:
                failures.append(f"{tool}: {result.stderr.strip()}")
        with lock:
            done[0] += 1
            if on_progress is not None and done[0] >= COMMANDS // 3:
                on_progress.set()
        return result.returncode

    failures: list[str] = []
    with ThreadPoolExecutor(PARALLEL) as pool:
        codes = list(pool.map(one, range(COMMANDS)))
    (work / "failures").write_text("".join(f"{failure}\n" for failure in failures))
    return codes.count(0)


def check_exclusion(work: Path, succeeded: int) -> None:
    """The count equals the increments that ran; held intervals are disjoint; fencing revisions grow."""
    rows = [line.split() for line in (work / "log").read_text().splitlines()]
    assert succeeded == COMMANDS, (work / "failures").read_text()
    assert len(rows) >= COMMANDS
    assert int((work / "counter").read_text()) == len(rows), "an increment was lost"
    intervals = sorted((int(start), int(end), int(rev), tool) for start, end, rev, tool in rows)
    for before, after in itertools.pairwise(intervals):
        assert before[1] <= after[0], f"two holders at once: {before} and {after}"
    assert {tool for *_, tool in intervals} == {"etcdpy", "etcdctl"}
    revisions = [rev for _, _, rev, tool in intervals if tool == "etcdpy"]
    assert revisions == sorted(set(revisions)), "ETCD_LOCK_REV must strictly increase from holder to holder"


def test_fifty_locked_increments_with_etcdctl_mixed_in_count_exactly_and_never_overlap(
    shared_server: ServerProcess, shared_client: Client, tmp_path: Path, name: str
) -> None:
    succeeded = run_increments(shared_server.endpoint, tmp_path / "work", name)
    check_exclusion(tmp_path / "work", succeeded)
    assert queued(shared_client, name) == 0


@pytest.mark.slow
def test_locked_increments_stay_exact_when_the_cluster_leader_is_killed(tmp_path: Path, name: str) -> None:
    with running_cluster("etcdpy", tmp_path, 3) as cluster:
        leader = cluster.wait_leader()
        progress = threading.Event()
        killer = threading.Thread(target=lambda: progress.wait(120) and leader.kill(signal.SIGKILL))
        killer.start()
        succeeded = run_increments(cluster.endpoints, tmp_path / "work", name, progress)
        killer.join()
        assert progress.is_set() and leader.proc is not None and leader.proc.returncode is not None
        check_exclusion(tmp_path / "work", succeeded)


# -- losing the lock


def test_a_killed_holder_hands_the_lock_to_the_next_waiter_after_its_ttl(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], tmp_path: Path, name: str
) -> None:
    endpoint, ttl = shared_server.endpoint, 3
    holder = Running("etcdpy", endpoint, "lock", "--ttl", str(ttl), name)
    running.append(holder)
    holder.lines(2)
    acquired = tmp_path / "acquired"
    waiter = Running("etcdpy", endpoint, "lock", name, "--", "sh", "-c", f"date +%s%N > {acquired}")
    running.append(waiter)
    wait_until(lambda: queued(shared_client, name) == 2, 30, "the waiter never queued")
    killed = time.time_ns()
    holder.kill()
    assert waiter.wait(ttl + 30) == 0, waiter.stderr()
    waited = (int(acquired.read_text()) - killed) / 1e9
    # The lease lives a TTL after its last renewal, about a third of a TTL before the kill
    # (on a loaded machine renewals come late: a third of the TTL is the margin).
    assert ttl / 3 <= waited <= ttl + 10, waited
    assert queued(shared_client, name) == 0


def test_a_revoked_lease_terminates_the_command_and_lock_fails(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], tmp_path: Path, name: str
) -> None:
    pid_file = tmp_path / "pid"
    # The command ignores SIGTERM, so only the SIGKILL after the grace period stops it.
    holder = Running(
        "etcdpy", shared_server.endpoint, "lock", "--ttl", "3", "--grace", "1s", name, "--",
        "sh", "-c", f'trap "" TERM; echo $$ > {pid_file}; echo started; exec sleep 60',
    )  # fmt: skip
    running.append(holder)
    assert holder.lines(1) == ["started"]
    command_pid = int(pid_file.read_text())
    revoked = time.monotonic()
    result = run_tool(
        "etcdpy", shared_server.endpoint, "lease", "revoke", f"{lease_of(shared_client, name):x}"
    )
    assert result.returncode == 0, result.stderr
    code = holder.wait(30)
    elapsed = time.monotonic() - revoked
    assert code == 1
    assert re.fullmatch(
        rf'Error: session expired: lock "{name}/[0-9a-f]+" lost while the command ran'
        r" \(command terminated\)\n",
        holder.stderr(),
    ), holder.stderr()
    assert elapsed >= 1.0, "the command ignored SIGTERM: only SIGKILL after --grace can have ended it"
    with pytest.raises(ProcessLookupError):
        os.kill(command_pid, 0)


@pytest.mark.parametrize("tool", ["etcdpy", "etcdctl"])
def test_a_holder_without_command_whose_lease_is_revoked_reports_session_expired(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], tool: str, name: str
) -> None:
    holder = Running(tool, shared_server.endpoint, "lock", "--ttl", "3", name)
    running.append(holder)
    holder.lines(2)
    shared_client.lease_revoke(lease_of(shared_client, name))
    assert holder.wait() == 1
    assert holder.stderr() == "Error: session expired\n"


def test_lock_rev_is_a_fencing_token_refused_once_the_lock_is_lost(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    endpoint = shared_server.endpoint
    script = 'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"; exec sleep 60'
    first = Running("etcdpy", endpoint, "lock", "--ttl", "3", "--grace", "0s", name, "--", "sh", "-c", script)
    running.append(first)
    first_key, first_rev = first.lines(1)[0].split()
    second = Running("etcdpy", endpoint, "lock", "--ttl", "3", name, "--", "sh", "-c", script)
    running.append(second)
    wait_until(lambda: queued(shared_client, name) == 2, 30, "the second holder never queued")

    def fenced_write(key: str, rev: str, value: str) -> bool:
        guard = compare(key, CompareTarget.CREATE, CompareResult.EQUAL, int(rev))
        return shared_client.txn([guard], [op_put(put_request("fence-data", value))]).succeeded

    assert fenced_write(first_key, first_rev, "first, holding")
    shared_client.lease_revoke(lease_of(shared_client, name))
    second_key, second_rev = second.lines(1)[0].split()
    assert int(second_rev) > int(first_rev)
    assert not fenced_write(first_key, first_rev, "first, after losing the lock")
    assert fenced_write(second_key, second_rev, "second, holding")
    assert shared_client.get("fence-data").kvs[0].value == b"second, holding"
    assert first.wait(30) == 1
    second.stop()
    assert second.proc.returncode == 143, "SIGTERM went to the command (sleep), and lock reports its death"


# -- giving up and interrupting


def test_timeout_gives_up_waiting_and_leaves_nothing_behind(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    holder = Running("etcdpy", shared_server.endpoint, "lock", name)
    running.append(holder)
    holder.lines(2)
    before = leases(shared_client)
    result = run_tool("etcdpy", shared_server.endpoint, "lock", "--timeout", "1s", name, "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f'Error: lock "{name}" not acquired within 1s (--timeout)\n'
    assert queued(shared_client, name) == 1
    assert leases(shared_client) <= before, "the waiter's session lease is revoked"


@pytest.mark.parametrize("tool", ["etcdpy", "etcdctl"])
def test_an_interrupted_waiter_reports_context_canceled_and_leaves_the_queue(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], tool: str, name: str
) -> None:
    holder = Running("etcdpy", shared_server.endpoint, "lock", name)
    running.append(holder)
    holder.lines(2)
    waiter = Running(tool, shared_server.endpoint, "lock", name, "--", "echo", "ran")
    running.append(waiter)
    wait_until(lambda: queued(shared_client, name) == 2, 30, "the waiter never queued")
    waiter.signal(signal.SIGINT)
    assert waiter.wait() == 1
    stderr = waiter.stderr()
    if tool == "etcdctl":
        stderr = without_zap_lines(stderr)  # its client may log a warning for the attempt the signal ended
    assert (waiter.rest(), stderr) == ([], "Error: context canceled\n")
    assert queued(shared_client, name) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_releases_a_held_lock_and_exits_cleanly(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], sig: int, name: str
) -> None:
    holder = Running("etcdpy", shared_server.endpoint, "lock", name)
    running.append(holder)
    holder.lines(2)
    lease = lease_of(shared_client, name)
    holder.signal(sig)
    assert holder.wait() == 0
    assert holder.stderr() == ""
    assert queued(shared_client, name) == 0
    assert shared_client.lease_time_to_live(lease).TTL == -1, "the session's lease is revoked on exit"


def test_sigterm_goes_to_the_running_command_and_the_lock_is_released_after_it(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    # Short sleeps in a loop: a signal landing between a fork and its exec cannot leave a long sleeper behind.
    script = 'trap "echo cleaning up; exit 0" TERM; echo started; while :; do sleep 0.1; done'
    holder = Running("etcdpy", shared_server.endpoint, "lock", name, "--", "sh", "-c", script)
    running.append(holder)
    assert holder.lines(1) == ["started"]
    holder.signal(signal.SIGTERM)
    assert holder.wait() == 0, holder.stderr()
    assert holder.rest() == ["cleaning up"]
    assert queued(shared_client, name) == 0


# -- etcdctl's output


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_lock_prints_its_key_and_runs_commands_like_etcdctl(
    server: ServerProcess, running: list[Running]
) -> None:
    endpoint = server.endpoint
    printed = {}
    for tool in ("etcdctl", "etcdpy"):
        holder = Running(tool, endpoint, "lock", "same")
        running.append(holder)
        key, blank = holder.lines(2)
        match = LOCK_KEY.match(key)
        assert match is not None and match["name"] == "same" and blank == ""
        with Client(endpoint) as c:
            assert c.get(key).kvs[0].lease == int(match["lease"], 16)
        holder.signal(signal.SIGINT)
        assert holder.wait() == 0
        printed[tool] = (LOCK_KEY.sub(r"\g<name>/LEASE", key), blank, holder.stderr())
    assert printed["etcdpy"] == printed["etcdctl"]

    env_script = 'echo "$ETCD_LOCK_KEY"; exit 3'
    results = {
        tool: run_tool(tool, endpoint, "lock", "cmd", "--", "sh", "-c", env_script) for tool in printed
    }
    for result in results.values():
        assert LOCK_KEY.match(result.stdout.strip()) is not None
        assert result.stderr == "Error: exit status 3\n"
    # etcdctl 3.4 always exits 1 here; etcdpy passes the command's exit code on, as later etcdctl does.
    assert (results["etcdctl"].returncode, results["etcdpy"].returncode) == (1, 3)

    for args in (("lock",), ("lock", "x", "no-such-program-here")):
        ours, theirs = run_tool("etcdpy", endpoint, *args), run_tool("etcdctl", endpoint, *args)
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        )
