"""Session: the lease stays alive while the session runs, and its loss is noticed promptly.

Every test runs against the reference etcd and etcdpy (see conftest.py).
"""

from __future__ import annotations

import threading
import time

import pytest
from procs import ServerProcess, free_port

from etcdpy.api.errors import ErrLeaseNotFound
from etcdpy.client import Client
from etcdpy.client.concurrency import Session


def test_session_keeps_granted_and_adopted_leases_alive_past_their_ttl(
    shared_server: ServerProcess, recipe_client: Client
) -> None:
    adopted_id = recipe_client.lease_grant(2).ID
    # Renewals fail over like reads: a first endpoint that refuses connections must not matter.
    with (
        Client([f"127.0.0.1:{free_port()}", shared_server.endpoint]) as failing_over,
        Session(recipe_client, ttl=2) as granted,
        Session(recipe_client, lease_id=adopted_id) as adopted,
        Session(failing_over, ttl=2) as through_second_endpoint,
    ):
        assert adopted.lease_id == adopted_id
        # Past the TTL only renewals can have kept the leases.
        assert not granted.lost.wait(3.0)
        assert not adopted.lost.is_set() and not through_second_endpoint.lost.is_set()
        for lease_id in (granted.lease_id, adopted_id, through_second_endpoint.lease_id):
            assert recipe_client.lease_time_to_live(lease_id).TTL > 0


def test_adopting_a_lease_that_does_not_exist_fails(recipe_client: Client) -> None:
    with pytest.raises(ErrLeaseNotFound):
        Session(recipe_client, lease_id=0x7E57)


def test_close_revokes_the_lease_and_deletes_its_keys_once(recipe_client: Client, recipe_name: str) -> None:
    session = Session(recipe_client, ttl=30)
    recipe_client.put(recipe_name, "v", lease=session.lease_id)
    with session:
        pass
    assert recipe_client.lease_time_to_live(session.lease_id).TTL == -1
    assert recipe_client.get(recipe_name).count == 0
    assert session.closed and not session.lost.is_set()
    session.close()  # idempotent: no second revoke (which would fail: lease not found)


def test_revoked_lease_sets_lost_within_a_renewal_interval_and_calls_callbacks_once(
    recipe_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 4
    session = Session(recipe_client, ttl=ttl)
    calls: list[str] = []
    called = threading.Event()
    session.add_lost_callback(lambda: calls.append("first"))
    session.add_lost_callback(lambda: 1 / 0)  # a failing callback is logged; the others still run
    session.add_lost_callback(session.close)  # closing from the keep-alive thread itself
    session.add_lost_callback(lambda: (calls.append("second"), called.set()))
    revoked_at = time.monotonic()
    recipe_client.lease_revoke(session.lease_id)
    assert session.lost.wait(ttl), "a revoked lease must be noticed before its TTL could have run out"
    # Renewals run every TTL/3; allow a generous margin for a loaded machine, still well under the TTL.
    assert time.monotonic() - revoked_at < ttl / 3 + 2.0
    assert called.wait(5.0)
    assert calls == ["first", "second"]
    assert session.closed
    failures = [r.exc_info[0] for r in caplog.records if r.exc_info is not None and r.exc_info[0]]
    assert failures == [ZeroDivisionError]
    late: list[str] = []
    session.add_lost_callback(lambda: late.append(threading.current_thread().name))
    assert late == [threading.current_thread().name], "a callback added after the loss runs at once"
    session.close()
    assert calls == ["first", "second"]


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_no_renewal_for_a_whole_ttl_sets_lost(server: ServerProcess) -> None:
    # The timeout bounds the grant only (under load the reference etcd once took over 1 s to grant):
    # a renewal is bounded by the lease's remaining time, so it cannot hold `lost` back.
    with Client(server.endpoint, command_timeout=5.0) as client:
        ttl = 2
        session = Session(client, ttl=ttl)
        assert not session.lost.is_set()
        server.stop()  # the cluster is gone: nothing can renew the lease any more
        assert session.lost.wait(ttl + 5.0)
        session.close()  # lost: nothing to revoke, returns without the server
