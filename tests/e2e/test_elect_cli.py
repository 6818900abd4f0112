"""``etcdpy elect`` as real processes: leadership passes on resign and on death, observers see every leader.

etcdpy and etcdctl candidates stand in one election; an etcdpy observer and
an etcdctl observer (``elect -l``) watch it, and must print the same lines.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from cli_tools import LOCK_KEY, Running, lease_of, queued, run_tool
from procs import ServerProcess

from etcdpy.chaos.cluster import wait_until
from etcdpy.client import Client
from etcdpy.client.concurrency import Election, Session


def test_leadership_passes_on_resign_and_on_death_and_observers_print_every_leader_in_order(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    endpoint = shared_server.endpoint

    def start(tool: str, *args: str) -> Running:
        proc = Running(tool, endpoint, "elect", *args)
        running.append(proc)
        return proc

    def elected(candidate: Running, value: str) -> str:
        key, printed = candidate.lines(2)
        assert LOCK_KEY.match(key) is not None and printed == value
        return key

    with Session(shared_client, ttl=5) as session:
        first = Election(session, name)
        first.campaign(b"zero")
        first_key = first.key.decode()
        observers = {tool: start(tool, "-l", name) for tool in ("etcdpy", "etcdctl")}
        json_observers = {tool: start(tool, "-l", "-w", "json", name) for tool in ("etcdpy", "etcdctl")}
        for observer in observers.values():
            assert observer.lines(2) == [first_key, "zero"], "the leader when the observer started"
        first_documents = {tool: observer.lines(1) for tool, observer in json_observers.items()}
        first.proclaim(b"zero, proclaimed")
        one = start("etcdpy", "--ttl", "2", name, "one")
        wait_until(lambda: queued(shared_client, name) == 2, 30, "candidate one never queued")
        first.resign()
    one_key = elected(one, "one")
    two = start("etcdpy", "--ttl", "2", name, "two")
    wait_until(lambda: queued(shared_client, name) == 2, 30, "candidate two never queued")
    three = start("etcdctl", name, "three")
    wait_until(lambda: queued(shared_client, name) == 3, 30, "candidate three never queued")

    one.signal(signal.SIGINT)  # resigns: two leads at once
    assert one.wait() == 0 and one.stderr() == ""
    two_key = elected(two, "two")
    assert one_key != two_key

    killed = time.monotonic()
    two.kill()  # kill -9: three leads once two's lease has expired
    three_key = elected(three, "three")
    waited = time.monotonic() - killed
    assert waited >= 2 / 3, "three took over before two's lease could have expired"

    three.signal(signal.SIGINT)
    assert three.wait() == 0
    expected = [first_key, "zero, proclaimed", one_key, "one", two_key, "two", three_key, "three"]
    for tool, observer in observers.items():
        assert observer.lines(len(expected)) == expected, f"{tool} elect -l"
        observer.signal(signal.SIGINT)
        assert observer.wait() == 0, observer.stderr()
        assert observer.rest() == [], f"{tool} elect -l printed more"
    documents = {}
    for tool, observer in json_observers.items():
        lines = first_documents[tool] + observer.lines(len(expected) // 2 - 1)
        observer.signal(signal.SIGINT)
        assert observer.wait() == 0, observer.stderr()
        documents[tool] = [json.loads(line) for line in lines]
    for ours, theirs in zip(documents["etcdpy"], documents["etcdctl"], strict=True):
        # The revision each tool read a new leader at may differ by a write made meanwhile.
        assert ours["header"].pop("revision") >= ours["kvs"][0]["mod_revision"]
        theirs["header"].pop("revision")
        assert ours == theirs
    assert queued(shared_client, name) == 0


@pytest.mark.parametrize("tool", ["etcdpy", "etcdctl"])
def test_an_interrupted_candidate_reports_context_canceled_and_withdraws(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], tool: str, name: str
) -> None:
    leader = Running("etcdpy", shared_server.endpoint, "elect", name, "leader")
    running.append(leader)
    leader.lines(2)
    waiting = Running(tool, shared_server.endpoint, "elect", name, "waiting")
    running.append(waiting)
    wait_until(lambda: queued(shared_client, name) == 2, 30, "the candidate never queued")
    waiting.signal(signal.SIGTERM)
    assert waiting.wait() == 1
    assert (waiting.rest(), waiting.stderr()) == ([], "Error: context canceled\n")
    assert queued(shared_client, name) == 1


def test_a_leader_whose_lease_is_revoked_fails_with_session_expired(
    shared_server: ServerProcess, shared_client: Client, running: list[Running], name: str
) -> None:
    leader = Running("etcdpy", shared_server.endpoint, "elect", "--ttl", "3", name, "leader")
    running.append(leader)
    leader.lines(2)
    shared_client.lease_revoke(lease_of(shared_client, name))
    assert leader.wait() == 1
    assert leader.stderr() == "Error: elect: session expired\n"


@pytest.mark.parametrize(
    "args",
    [(), ("a",), ("-l", "a", "b"), ("a", "b", "c")],
    ids=["none", "no-proposal", "listen-proposal", "three"],
)
def test_argument_errors_are_etcdctls(shared_server: ServerProcess, args: tuple[str, ...]) -> None:
    ours, theirs = (
        run_tool("etcdpy", shared_server.endpoint, "elect", *args),
        run_tool("etcdctl", shared_server.endpoint, "elect", *args),
    )
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    assert ours.returncode == 128
