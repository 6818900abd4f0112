"""`alarm list` / `alarm disarm` and the Alarm RPC: etcdpy answers as etcd 3.4 does, byte for byte.

Alarms are raised through the Alarm RPC (ACTIVATE), as a member raises them;
etcdctl and etcdpy's CLI then run against both servers and must print the same.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from cluster_support import etcdctl, etcdpy_cli
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc


def _maintenance(server: ServerProcess) -> Iterator[rpc.MaintenanceStub]:
    with grpc.insecure_channel(server.endpoint) as channel:
        yield rpc.MaintenanceStub(channel)  # type: ignore[no-untyped-call]


def activate(server: ServerProcess, member_id: int, alarm: pb.AlarmType) -> None:
    for stub in _maintenance(server):
        stub.Alarm(
            pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=member_id, alarm=alarm), timeout=10
        )


def status_errors(server: ServerProcess) -> list[str]:
    for stub in _maintenance(server):
        return list(stub.Status(pb.StatusRequest(), timeout=10).errors)
    raise AssertionError("unreachable")


def _outcome(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr.strip().splitlines()[-1] if result.stderr else ""


@pytest.fixture
def both(etcd_server: ServerProcess, etcdpy_server: ServerProcess) -> tuple[ServerProcess, ServerProcess]:
    return etcd_server, etcdpy_server


def _each_client(server: ServerProcess, *args: str) -> list[tuple[int, str, str]]:
    """The outcome of etcdctl and of etcdpy's CLI running the same command against `server`."""
    return [
        _outcome(etcdctl(server.endpoint, *args, check=False)),
        _outcome(etcdpy_cli(server.endpoint, *args, check=False)),
    ]


@pytest.mark.parametrize("write_out", ["simple", "json", "fields", "table"])
def test_alarm_list_prints_what_etcdctl_prints_against_etcd(
    both: tuple[ServerProcess, ServerProcess], write_out: str
) -> None:
    etcd, etcdpy = both
    for server in both:
        activate(server, 5, pb.NOSPACE)
    reference = _outcome(etcdctl(etcd.endpoint, "alarm", "list", "-w", write_out, check=False))
    if write_out == "fields":
        # etcdctl 3.4 crashes printing a response without a header; etcdpy prints the alarms.
        assert reference[0] != 0
        expected: tuple[int, str, str] = (0, '"MemberID" : 5\n"AlarmType" : NOSPACE\n\n', "")
    else:
        expected = reference
    assert _outcome(etcdpy_cli(etcd.endpoint, "alarm", "list", "-w", write_out, check=False)) == expected
    assert _outcome(etcdpy_cli(etcdpy.endpoint, "alarm", "list", "-w", write_out, check=False)) == expected
    if write_out != "fields":
        assert _outcome(etcdctl(etcdpy.endpoint, "alarm", "list", "-w", write_out, check=False)) == expected


def test_disarm_clears_every_alarm_and_prints_them(both: tuple[ServerProcess, ServerProcess]) -> None:
    outputs = []
    for server in both:
        activate(server, 5, pb.CORRUPT)
        activate(server, 7, pb.NOSPACE)
        disarmed = etcdpy_cli(server.endpoint, "alarm", "disarm", "-w", "json")
        outputs.append(sorted(json.loads(disarmed.stdout)["alarms"], key=lambda a: a["memberID"]))
        assert _each_client(server, "alarm", "list") == [(0, "", "")] * 2
        assert _each_client(server, "alarm", "disarm") == [(0, "", "")] * 2  # nothing left to disarm
    assert outputs[0] == outputs[1] == [{"memberID": 5, "alarm": 2}, {"memberID": 7, "alarm": 1}]


def test_disarm_simple_output_matches_etcdctl(both: tuple[ServerProcess, ServerProcess]) -> None:
    etcd, etcdpy = both
    activate(etcd, 9, pb.CORRUPT)
    reference = _outcome(etcdctl(etcd.endpoint, "alarm", "disarm", check=False))
    assert reference == (0, "memberID:9 alarm:CORRUPT \n", "")
    activate(etcd, 9, pb.CORRUPT)
    assert _outcome(etcdpy_cli(etcd.endpoint, "alarm", "disarm", check=False)) == reference
    activate(etcdpy, 9, pb.CORRUPT)
    assert _outcome(etcdpy_cli(etcdpy.endpoint, "alarm", "disarm", check=False)) == reference


@pytest.mark.parametrize("subcommand", ["list", "disarm"])
def test_arguments_are_refused_as_etcdctl_refuses_them(etcdpy_server: ServerProcess, subcommand: str) -> None:
    reference = _outcome(etcdctl(etcdpy_server.endpoint, "alarm", subcommand, "extra", check=False))
    assert reference == (128, "", f"Error: alarm {subcommand} command accepts no arguments")
    assert (
        _outcome(etcdpy_cli(etcdpy_server.endpoint, "alarm", subcommand, "extra", check=False)) == reference
    )


def test_status_lists_the_alarms_after_its_own_errors(both: tuple[ServerProcess, ServerProcess]) -> None:
    for server in both:
        activate(server, 5, pb.NOSPACE)
        activate(server, 5, pb.NONE)  # zero fields are left out of Go's text form
        assert sorted(status_errors(server)) == ["memberID:5 ", "memberID:5 alarm:NOSPACE "]


def test_the_alarm_response_has_no_header_and_unknown_types_are_kept(
    both: tuple[ServerProcess, ServerProcess],
) -> None:
    answers = []
    for server in both:
        for stub in _maintenance(server):
            request = pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=3, alarm=9)  # type: ignore[arg-type]
            activated = stub.Alarm(request, timeout=10)
            listed = stub.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=10)
            answers.append(
                (activated.HasField("header"), activated.SerializeToString(), listed.SerializeToString())
            )
    assert answers[0] == answers[1]
    assert answers[0][0] is False
