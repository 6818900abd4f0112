"""Election: one leader at a time, handover on resign and on session end, observers see every value.

Every test runs against the reference etcd and etcdpy (see conftest.py).
"""

from __future__ import annotations

import itertools
import signal

import pytest
from recipe_support import Background, current_revision, etcdctl, read_lines, wait_for_put

from etcdpy.client import Client
from etcdpy.client.concurrency import Election, NoLeader, NotLeader, Observation, Session


def collect(observation: Observation, count: int) -> Background:
    """Read ``count`` items from an observation in the background, then close it."""

    def read() -> list[tuple[bytes, bytes]]:
        with observation:
            return [(bytes(kv.key), bytes(kv.value)) for kv in itertools.islice(observation, count)]

    return Background(read)


def test_a_lone_candidate_leads_proclaims_and_resigns(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as session:
        election = Election(session, recipe_name)
        with pytest.raises(NoLeader):
            election.leader()
        with pytest.raises(NotLeader):
            election.proclaim(b"too early")
        election.campaign(b"first")
        assert election.key == f"{recipe_name}/{session.lease_id:x}".encode()
        leader = election.leader()
        assert (leader.key, leader.value, leader.create_revision) == (
            election.key,
            b"first",
            election.revision,
        )
        election.proclaim(b"second")
        assert election.leader().value == b"second"
        election.resign()
        with pytest.raises(NoLeader):
            election.leader()
        with pytest.raises(NotLeader):
            election.proclaim(b"after resigning")


@pytest.mark.parametrize("handover", ["resign", "session close"])
def test_the_next_candidate_leads_once_the_leader_leaves(
    recipe_client: Client, recipe_name: str, handover: str
) -> None:
    with Session(recipe_client, ttl=10) as second_session:
        first_session = Session(recipe_client, ttl=10)
        first = Election(first_session, recipe_name)
        first.campaign(b"one")
        first_revision = first.revision
        second = Election(second_session, recipe_name)
        start = current_revision(recipe_client) + 1
        campaigning = Background(lambda: second.campaign(b"two"))
        wait_for_put(recipe_client, recipe_name, start)
        assert not campaigning.done.is_set()
        assert first.leader().value == b"one"
        if handover == "resign":
            first.resign()
        else:
            first_session.close()
        campaigning.result()
        leader = second.leader()
        assert (leader.key, leader.value) == (second.key, b"two")
        assert second.revision == leader.create_revision > first_revision
        with pytest.raises(NotLeader):
            first.proclaim(b"stale")
        first_session.close()


def test_a_leader_whose_key_is_gone_cannot_proclaim(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as session:
        election = Election(session, recipe_name)
        election.campaign(b"v")
        recipe_client.delete(election.key)
        with pytest.raises(NotLeader):
            election.proclaim(b"w")
        assert recipe_client.get(recipe_name + "/", prefix=True).count == 0, "proclaim must not recreate it"


def test_campaign_timeout_withdraws_the_candidate(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as leader_session, Session(recipe_client, ttl=10) as other_session:
        leader = Election(leader_session, recipe_name)
        leader.campaign(b"leader")
        other = Election(other_session, recipe_name)
        with pytest.raises(TimeoutError):
            other.campaign(b"other", timeout=0.5)
        assert [kv.key for kv in recipe_client.get(recipe_name + "/", prefix=True).kvs] == [leader.key]
        assert (other.key, other.revision) == (b"", -1)


def test_observe_sees_every_leader_and_value_in_order(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as a_session, Session(recipe_client, ttl=10) as b_session:
        a, b = Election(a_session, recipe_name), Election(b_session, recipe_name)
        live = collect(a.observe(), 6)  # observing before anybody leads, reading as things happen
        replay = a.observe()  # observing before anybody leads, reading only after it all happened
        a.campaign(b"a1")
        late = b.observe()  # observing while a leads: from a's current value on
        a.proclaim(b"a2")
        start = current_revision(recipe_client) + 1
        campaigning = Background(lambda: b.campaign(b"b1"))
        wait_for_put(recipe_client, recipe_name, start, other_than=a.key)
        a.proclaim(b"a3")
        a.resign()
        campaigning.result()
        b.proclaim(b"b2")
        b.proclaim(b"b3")
        a_key, b_key = queue_key(a_session, recipe_name), queue_key(b_session, recipe_name)
        a_values = [(a_key, b"a1"), (a_key, b"a2"), (a_key, b"a3")]
        b_values = [(b_key, b"b1"), (b_key, b"b2"), (b_key, b"b3")]
        assert live.result() == a_values + b_values
        # b1 and b2 are history by now: only reading the successor at the very revision
        # of a's resignation finds them.
        assert collect(replay, 6).result() == a_values + b_values
        assert collect(late, 6).result() == a_values + b_values


def queue_key(session: Session, name: str) -> bytes:
    return f"{name}/{session.lease_id:x}".encode()


def test_closing_an_observation_ends_a_blocked_iteration(recipe_client: Client, recipe_name: str) -> None:
    with Session(recipe_client, ttl=10) as session:
        observation = Election(session, recipe_name).observe()
        reading = Background(lambda: list(observation))
        observation.close()
        assert reading.result() == []


def test_etcdctl_elect_and_an_election_share_one_queue(recipe_client: Client, recipe_name: str) -> None:
    endpoint = recipe_client.endpoints[0].target
    start = current_revision(recipe_client) + 1
    with (
        etcdctl(endpoint, "elect", recipe_name, "from-etcdctl") as candidate,
        Session(recipe_client, ttl=10) as session,
    ):
        etcdctl_key = wait_for_put(recipe_client, recipe_name, start)
        assert read_lines(candidate, 2) == [etcdctl_key.decode(), "from-etcdctl"], "etcdctl leads"
        election = Election(session, recipe_name)
        leader = election.leader()
        assert (leader.key, leader.value) == (etcdctl_key, b"from-etcdctl")
        with pytest.raises(TimeoutError):
            election.campaign(b"from-etcdpy", timeout=0.5)
        campaigning = Background(lambda: election.campaign(b"from-etcdpy"))
        candidate.send_signal(signal.SIGINT)  # etcdctl resigns on interrupt
        campaigning.result()
        assert election.leader().value == b"from-etcdpy"
        with etcdctl(endpoint, "elect", "--listen", recipe_name) as listener:
            assert read_lines(listener, 2) == [election.key.decode(), "from-etcdpy"]
            election.proclaim(b"proclaimed")
            assert read_lines(listener, 2) == [election.key.decode(), "proclaimed"]
