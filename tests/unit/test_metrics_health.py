"""/health, /livez and /readyz of a one-member member, in-process: etcd 3.4's and 3.6's bodies and codes.

The HTTP server mounts these functions; tests/e2e/test_health.py asks them over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from test_metrics_registry import started

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server import health
from etcdpy.server.member import Member

HEALTHY = health.Answer(200, "text/plain; charset=utf-8", b'{"health":"true"}')
UNHEALTHY = health.Answer(503, "text/plain; charset=utf-8", b'{"health":"false"}\n')


def run(tmp_path: Path, scenario: Callable[[Member], Awaitable[None]]) -> None:
    async def main() -> None:
        async with started(tmp_path) as member:
            await scenario(member)

    asyncio.run(main())


async def raise_alarm(member: Member, alarm: rpc_pb2.AlarmType.ValueType) -> None:
    """Raise `alarm` through the log, as a member whose disk is full (or corrupt) does."""
    request = rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member.cluster.local_id, alarm=alarm
    )
    await member.server.propose(raft_internal_pb2.InternalRaftRequest(alarm=request))


def test_health_is_true_on_a_member_that_leads_and_reads(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        assert await health.health(member.server) == HEALTHY

    run(tmp_path, scenario)


def test_health_is_false_under_a_nospace_alarm_unless_it_is_excluded(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        await raise_alarm(member, rpc_pb2.NOSPACE)
        assert await health.health(member.server) == UNHEALTHY
        assert await health.health(member.server, "exclude=NOSPACE") == HEALTHY
        assert await health.health(member.server, "exclude=CORRUPT") == UNHEALTHY

    run(tmp_path, scenario)


def test_livez_and_readyz_answer_ok_and_list_their_checks_when_verbose(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        ok = health.Answer(200, "text/plain; charset=utf-8", b"ok\n")
        assert await health.livez(member.server) == ok
        assert await health.readyz(member.server) == ok
        assert (await health.livez(member.server, "verbose")).body == b"[+]serializable_read ok\nok\n"
        assert (await health.readyz(member.server, "verbose")).body == (
            b"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n"
            b"[+]non_learner ok\nok\n"
        )
        excluded = await health.readyz(member.server, "verbose&exclude=linearizable_read&exclude=nonexistent")
        assert excluded.body == b"[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok\n"

    run(tmp_path, scenario)


def test_readyz_fails_its_data_corruption_check_under_a_corrupt_alarm(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        await raise_alarm(member, rpc_pb2.CORRUPT)
        failed = await health.readyz(member.server)
        assert failed.status == 503
        assert failed.body == (
            b"[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n"
            b"[+]linearizable_read ok\n[+]non_learner ok\n\n"
        )
        assert (await health.readyz(member.server, "exclude=data_corruption")).status == 200
        assert (await health.livez(member.server)).status == 200  # the process still serves local reads
        assert await health.health(member.server) == UNHEALTHY

    run(tmp_path, scenario)


def test_every_check_has_its_own_path_and_an_unknown_one_is_not_found(tmp_path: Path) -> None:
    async def scenario(member: Member) -> None:
        routes = health.endpoints(member.server, member.metrics)
        assert set(routes) == {
            "/health",
            "/metrics",
            "/livez",
            "/livez/serializable_read",
            "/readyz",
            "/readyz/data_corruption",
            "/readyz/serializable_read",
            "/readyz/linearizable_read",
            "/readyz/non_learner",
        }
        assert (await routes["/readyz/non_learner"]("verbose")).body == b"[+]non_learner ok\nok\n"
        assert (await health.readyz(member.server, "", "nonexistent")).status == 404
        scraped = await routes["/metrics"]("")
        assert scraped.status == 200 and scraped.content_type.startswith("text/plain; version=0.0.4")
        assert b"etcd_server_has_leader 1.0" in scraped.body

    run(tmp_path, scenario)
