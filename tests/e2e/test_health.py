"""/health over HTTP answers as etcd 3.4 does (same status, type and body); /livez and /readyz as etcd 3.6.

/health is asked of the reference etcd and of etcdpy alike and the answers compared whole; etcd 3.4
has no /livez or /readyz, so those are checked against etcd 3.6's documented bodies.  Alarms are
raised through the Alarm RPC, as a member whose disk is full raises NOSPACE.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
import pytest
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc

TEXT = "text/plain; charset=utf-8"


def ask(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """(status, Content-Type, body), error statuses included."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def raise_alarm(server: ServerProcess, alarm: pb.AlarmType.ValueType) -> None:
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = rpc.MaintenanceStub(channel)  # type: ignore[no-untyped-call]
        stub.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=5, alarm=alarm), timeout=10)


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_health_is_true_on_a_healthy_member(server: ServerProcess) -> None:
    assert ask(f"{server.client_url}/health") == (200, TEXT, b'{"health":"true"}')


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_health_is_false_under_nospace_unless_excluded(server: ServerProcess) -> None:
    raise_alarm(server, pb.NOSPACE)
    assert ask(f"{server.client_url}/health") == (503, TEXT, b'{"health":"false"}\n')
    assert ask(f"{server.client_url}/health?exclude=NOSPACE") == (200, TEXT, b'{"health":"true"}')
    assert ask(f"{server.client_url}/health?exclude=CORRUPT")[0] == 503


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_health_is_true_with_auth_enabled(server: ServerProcess) -> None:
    # The member's own health read passes auth (a probe has no user): etcd 3.4 answers true.
    with grpc.insecure_channel(server.endpoint) as channel:
        auth = rpc.AuthStub(channel)  # type: ignore[no-untyped-call]
        auth.UserAdd(pb.AuthUserAddRequest(name="root", password="pw"), timeout=10)
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)
    assert ask(f"{server.client_url}/health") == (200, TEXT, b'{"health":"true"}')
    if server.kind == "etcdpy":  # etcd 3.4 has no /readyz
        assert ask(f"{server.client_url}/readyz") == (200, TEXT, b"ok\n")


@pytest.mark.server_kinds("etcd", "etcdpy")
def test_health_takes_only_get(server: ServerProcess) -> None:
    assert ask(f"{server.client_url}/health", method="POST") == (405, TEXT, b"Method Not Allowed\n")


def test_livez_and_readyz_say_ok_and_list_their_checks_when_verbose(etcdpy_server: ServerProcess) -> None:
    url = etcdpy_server.client_url
    assert ask(f"{url}/livez") == (200, TEXT, b"ok\n")
    assert ask(f"{url}/readyz") == (200, TEXT, b"ok\n")
    assert ask(f"{url}/livez?verbose") == (200, TEXT, b"[+]serializable_read ok\nok\n")
    assert ask(f"{url}/readyz?verbose&exclude=non_learner") == (
        200,
        TEXT,
        b"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n",
    )
    assert ask(f"{url}/readyz/linearizable_read?verbose") == (200, TEXT, b"[+]linearizable_read ok\nok\n")


def test_readyz_fails_under_a_corrupt_alarm_and_says_which_check(etcdpy_server: ServerProcess) -> None:
    url = etcdpy_server.client_url
    raise_alarm(etcdpy_server, pb.CORRUPT)
    status, content_type, body = ask(f"{url}/readyz")
    assert (status, content_type) == (503, TEXT)
    assert b"[-]data_corruption failed: alarm activated: CORRUPT\n" in body
    assert ask(f"{url}/readyz?exclude=data_corruption") == (200, TEXT, b"ok\n")
    assert ask(f"{url}/livez") == (200, TEXT, b"ok\n")
    assert ask(f"{url}/health")[0] == 503
