"""Auth results' printers, permission arguments, password readers, and streams refused for their token.

Expected bytes come from etcdctl 3.4.23's printers (printer_simple.go, printer_fields.go), as its transcripts
against etcd show them (tests/interop/test_auth_cli.py compares the two end to end).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import click
import grpc
import pytest
from watch_fakes import FakeCall, FakeCluster, FakeRpcError, created, events, put

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.errors import ErrInvalidAuthToken, ErrPermissionDenied, EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli import passwords
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.printers import Output, make_printer
from etcdpy.cli.printers import auth as printers
from etcdpy.cli.role import permission_range
from etcdpy.client.auth import PermissionType
from etcdpy.client.endpoints import Endpoint
from etcdpy.client.lease import KeepAlive
from etcdpy.client.watch import Watch, cancel_error

HEADER = pb.ResponseHeader(cluster_id=7, member_id=8, revision=9, raft_term=2)
FIELDS_HEADER = '"ClusterID" : 7\n"MemberID" : 8\n"Revision" : 9\n"RaftTerm" : 2\n'


def perm(kind: int, key: bytes, end: bytes = b"") -> auth_pb2.Permission:
    return auth_pb2.Permission(permType=kind, key=key, range_end=end)  # type: ignore[arg-type]


ROLE = pb.AuthRoleGetResponse(
    header=HEADER,
    perm=[
        perm(auth_pb2.Permission.WRITE, b"a", b"z"),
        perm(auth_pb2.Permission.READ, b"foo"),
        perm(auth_pb2.Permission.READWRITE, b"foo", b"fop"),
        perm(auth_pb2.Permission.WRITE, b"k", b"\x00"),
        perm(auth_pb2.Permission.READ, b"\x00", b"\x00"),
    ],
)


def printed(fmt: str, show: object, *args: object) -> bytes:
    out, err = io.BytesIO(), io.BytesIO()
    printer = make_printer(fmt, Output(out, err))  # type: ignore[arg-type]
    show(printer, *args)  # type: ignore[operator]
    return out.getvalue()


def test_role_get_simple_lists_read_then_write_permissions() -> None:
    assert printed("simple", printers.role_get, "r1", ROLE) == (
        b"Role r1\nKV Read:\n\tfoo\n\t[foo, fop) (prefix foo)\n\t[\x00, <open ended>\n"
        b"KV Write:\n\t[a, z)\n\t[foo, fop) (prefix foo)\n\t[k, <open ended>\n"
    )


def test_role_get_fields_has_go_printlns_double_space_and_quoted_keys() -> None:
    text = printed("fields", printers.role_get, "r1", ROLE).decode()
    assert text.startswith(FIELDS_HEADER + '"PermType" :  WRITE\n"Key" : "a"\n"RangeEnd" : "z"\n')
    assert text.endswith('"PermType" :  READ\n"Key" : "\\x00"\n"RangeEnd" : "\\x00"\n')


def test_role_get_json_is_the_message_with_zero_values_left_out() -> None:
    response = pb.AuthRoleGetResponse(header=HEADER, perm=[perm(auth_pb2.Permission.READ, b"foo")])
    assert printed("json", printers.role_get, "r1", response) == (
        b'{"header":{"cluster_id":7,"member_id":8,"revision":9,"raft_term":2},"perm":[{"key":"Zm9v"}]}\n'
    )


def test_changes_print_a_sentence_the_header_or_the_message() -> None:
    response = pb.AuthUserAddResponse(header=HEADER)
    assert printed("simple", printers.user_add, "alice", response) == b"User alice created\n"
    assert printed("fields", printers.user_add, "alice", response).decode() == FIELDS_HEADER
    assert printed("protobuf", printers.user_add, "alice", response) == response.SerializeToString()
    grant = pb.AuthUserGrantRoleResponse(header=HEADER)
    assert printed("simple", printers.user_grant_role, "u", "r", grant) == b"Role r is granted to user u\n"


def test_revoke_permission_sentences_follow_the_range_end() -> None:
    response = pb.AuthRoleRevokePermissionResponse(header=HEADER)
    sentence = {
        end: printed("simple", printers.role_revoke_permission, "r", b"k", end, response)
        for end in (b"", b"z", b"\x00")
    }
    assert sentence[b""] == b"Permission of key k is revoked from role r\n"
    assert sentence[b"z"] == b"Permission of range [k, z) is revoked from role r\n"
    assert sentence[b"\x00"] == b"Permission of range [k, <open ended> is revoked from role r\n"


def test_lists_and_user_get() -> None:
    roles = pb.AuthRoleListResponse(header=HEADER, roles=["r1", "root"])
    assert printed("simple", printers.role_list, roles) == b"r1\nroot\n"
    assert printed("fields", printers.role_list, roles).decode() == FIELDS_HEADER + '"Roles" : "r1" "root"\n'
    user = pb.AuthUserGetResponse(header=HEADER, roles=["a", "b"])
    assert printed("simple", printers.user_get, "u", user) == b"User: u\nRoles: a b\n"
    assert printed("simple", printers.user_get, "u", pb.AuthUserGetResponse()) == b"User: u\nRoles:\n"
    status = pb.AuthStatusResponse(header=HEADER, enabled=True, authRevision=4)
    assert (
        printed("simple", printers.auth_status, status) == b"Authentication Status: true\nAuthRevision: 4\n"
    )


@pytest.mark.parametrize(
    ("fmt", "show", "args"),
    [
        ("fields", printers.user_get, ("u", pb.AuthUserGetResponse())),
        ("fields", printers.user_list, (pb.AuthUserListResponse(),)),
        ("fields", printers.auth_status, (pb.AuthStatusResponse(),)),
        ("table", printers.role_get, ("r", pb.AuthRoleGetResponse())),
        ("table", printers.user_add, ("u", pb.AuthUserAddResponse())),
        ("table", printers.role_list, (pb.AuthRoleListResponse(),)),
    ],
)
def test_formats_etcdctl_has_no_printer_for_exit_4(fmt: str, show: object, args: tuple[object, ...]) -> None:
    with pytest.raises(CliError) as raised:
        printed(fmt, show, *args)
    assert (raised.value.exit_code, raised.value.message) == (
        ExitCode.BAD_FEATURE,
        f"{fmt} not supported as output format",
    )


def test_permission_range_follows_etcdctls_perm_range() -> None:
    assert permission_range(("k",), prefix=False, from_key=False) == (b"k", b"")
    assert permission_range(("k", "z", "ignored"), prefix=False, from_key=False) == (b"k", b"z")
    assert permission_range(("foo",), prefix=True, from_key=False) == (b"foo", b"fop")
    assert permission_range(("\xff",), prefix=True, from_key=False) == (b"\xc3\xbf", b"\xc3\xc0")
    assert permission_range(("k",), prefix=False, from_key=True) == (b"k", b"\x00")
    assert permission_range(("",), prefix=False, from_key=False) == (b"\x00", b"")
    assert permission_range(("", "z"), prefix=False, from_key=False) == (b"\x00", b"")  # etcdctl drops it
    assert permission_range(("",), prefix=True, from_key=False) == (b"\x00", b"\x00")
    for args, prefix, from_key, message in (
        (("k",), True, True, "--from-key and --prefix flags are mutually exclusive"),
        (("",), True, True, "--from-key and --prefix flags are mutually exclusive"),
        (("a", "b"), True, False, "unexpected endkey argument with --prefix flag"),
        (("a", "b"), False, True, "unexpected endkey argument with --from-key flag"),
    ):
        with pytest.raises(CliError) as raised:
            permission_range(args, prefix=prefix, from_key=from_key)
        assert (raised.value.exit_code, raised.value.message) == (ExitCode.BAD_ARGS, message)


def test_permission_types_parse_in_any_case() -> None:
    assert PermissionType.parse("Read") is PermissionType.READ
    assert PermissionType.parse("READWRITE") is PermissionType.READWRITE
    with pytest.raises(ValueError, match=r"^invalid permission type: rw$"):
        PermissionType.parse("rw")


def _with_stdin(data: bytes, fn: object) -> tuple[object, bytes]:
    """Run ``fn(output)`` with ``data`` as stdin (a click context's stream); its result and stdout."""
    out = io.BytesIO()
    output = Output(out, io.BytesIO())  # type: ignore[arg-type]
    runner_result: list[object] = []

    @click.command()
    def command() -> None:
        runner_result.append(fn(output))  # type: ignore[operator]

    from click.testing import CliRunner

    result = CliRunner().invoke(command, [], input=data)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if isinstance(result.exception, SystemExit) and result.exit_code:
        return result, out.getvalue()
    return runner_result[0], out.getvalue()


def test_passwords_are_asked_twice_on_stdout_as_etcdctl_asks() -> None:
    password, out = _with_stdin(b"s3cret\r\ns3cret\n", lambda o: passwords.ask_twice(o, "bob"))
    assert password == "s3cret"
    assert out == b"Password of bob: \nType password of bob again for confirmation: \n"
    different, _ = _with_stdin(b"a\nb\n", lambda o: passwords.ask_twice(o, "bob"))
    assert "given passwords are different" in different.output  # type: ignore[attr-defined]
    assert different.exit_code == 128  # type: ignore[attr-defined]
    empty, out = _with_stdin(b"\n", lambda o: passwords.ask_twice(o, "bob"))
    assert "empty password" in empty.output and out == b"Password of bob: \n"  # type: ignore[attr-defined]


def test_non_interactive_password_is_the_first_word() -> None:
    assert _with_stdin(b"  pw and more\nnext\n", lambda o: passwords.scan_word())[0] == "pw"
    assert _with_stdin(b"\npw\n", lambda o: passwords.scan_word())[0] == ""
    assert _with_stdin(b"", lambda o: passwords.scan_word())[0] == ""


# -- streams whose token the server refuses

EP = [Endpoint.parse(text) for text in ("ep1", "ep2")]
REFUSED = pb.WatchResponse(
    created=True,
    canceled=True,
    watch_id=-1,
    cancel_reason="rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
)


class Tokens:
    """The client's side of a refusal: which errors mean the token, and how many fresh tokens were fetched."""

    def __init__(self) -> None:
        self.fetched = 0

    def __call__(self, error: EtcdError) -> bool:
        if not isinstance(error, ErrInvalidAuthToken):
            return False
        self.fetched += 1
        return True


def test_cancel_reasons_name_etcd_errors() -> None:
    assert isinstance(cancel_error(REFUSED), ErrInvalidAuthToken)
    denied = pb.WatchResponse(
        cancel_reason="rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    )
    assert isinstance(cancel_error(denied), ErrPermissionDenied)
    assert cancel_error(pb.WatchResponse(canceled=True)) is None


def test_a_watch_refused_for_its_token_reopens_once_on_the_same_endpoint() -> None:
    cluster = FakeCluster(
        [FakeCall([REFUSED], None), FakeCall([created(5), events(put(b"k", b"v", 6))], None)]
    )
    tokens = Tokens()
    stream = Watch(cluster.open, EP, pb.WatchCreateRequest(key=b"k", start_revision=3), reauthenticate=tokens)  # type: ignore[arg-type]
    responses = iter(stream)
    first = next(responses)
    assert first.created and not first.canceled, "the caller sees the created response of the reopened watch"
    assert [e.kv.value for e in next(responses).events] == [b"v"]
    stream.close()
    assert tokens.fetched == 1
    assert [(ep, create.start_revision) for ep, create in cluster.opened] == [("ep1", 3), ("ep1", 3)]


def test_a_watch_refused_again_after_a_fresh_token_hands_the_refusal_on() -> None:
    cluster = FakeCluster([FakeCall([REFUSED], None), FakeCall([REFUSED], None)])
    tokens = Tokens()
    stream = Watch(cluster.open, EP, pb.WatchCreateRequest(key=b"k"), reauthenticate=tokens)  # type: ignore[arg-type]
    assert list(stream) == [REFUSED]
    assert tokens.fetched == 1 and len(cluster.opened) == 2


def test_a_refusal_that_is_not_about_the_token_is_not_retried() -> None:
    denied = pb.WatchResponse(
        created=True,
        canceled=True,
        cancel_reason="rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    )
    cluster = FakeCluster([FakeCall([denied], None)])
    tokens = Tokens()
    stream = Watch(cluster.open, EP, pb.WatchCreateRequest(key=b"k"), reauthenticate=tokens)  # type: ignore[arg-type]
    assert list(stream) == [denied]
    assert tokens.fetched == 0 and len(cluster.opened) == 1


class KeepAliveCalls:
    """Scripted LeaseKeepAlive calls: each entry a list of responses, or an error raised at once."""

    def __init__(self, *script: list[pb.LeaseKeepAliveResponse] | grpc.RpcError) -> None:
        self.script = list(script)
        self.opened = 0

    def open(self, requests: Iterator[pb.LeaseKeepAliveRequest]) -> FakeCall:
        self.opened += 1
        step = self.script.pop(0)
        if isinstance(step, grpc.RpcError):
            return FakeCall([], step)
        return FakeCall(step, None)  # type: ignore[arg-type]


def test_a_keep_alive_refused_for_its_token_reopens_once() -> None:
    invalid = FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    renewed = pb.LeaseKeepAliveResponse(ID=1, TTL=30)
    calls = KeepAliveCalls(invalid, [renewed])
    tokens = Tokens()
    keep_alive = KeepAlive(calls.open, 1, reauthenticate=tokens)  # type: ignore[arg-type]
    assert next(iter(keep_alive)) == renewed
    keep_alive.close()
    assert (calls.opened, tokens.fetched) == (2, 1)
    twice = KeepAliveCalls(invalid, invalid)
    with pytest.raises(ErrInvalidAuthToken):
        list(KeepAlive(twice.open, 1, reauthenticate=Tokens()))  # type: ignore[arg-type]
    assert twice.opened == 2
