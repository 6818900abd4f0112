"""The CLI where no server is needed: argument errors, unreachable endpoints, flags, and terminal tables."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from test_cli_support import invoke, plain_lines

from etcdpy.api.etcdserverpb import rpc_pb2
from etcdpy.cli import cli
from etcdpy.cli.app import lazy_command_in, normalize_bool_flags
from etcdpy.cli.printers import EndpointStatus, Output, terminal


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (("put",), 128, "put command needs 1 argument and input from stdin or 2 arguments"),
        (
            ("put", "k", "--ignore-value", "v"),
            128,
            "put command needs only 1 argument when 'ignore-value' is set",
        ),
        (
            ("put", "k", "v", "--lease=xyz"),
            128,
            'bad lease ID (strconv.ParseInt: parsing "xyz": invalid syntax), expecting ID in Hex',
        ),
        (("get",), 128, "get command needs one argument as key and an optional argument as range_end"),
        (
            ("get", "a", "--prefix", "--from-key"),
            128,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ),
        (
            ("get", "a", "b", "--prefix"),
            128,
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ),
        (("get", "a", "--order=UP"), 4, "bad sort order UP"),
        (("get", "a", "--sort-by=SIZE"), 4, "bad sort target SIZE"),
        (("get", "a", "--consistency=x"), 4, 'unknown consistency flag "x"'),
        (
            ("get", "a", "--keys-only", "--count-only"),
            3,
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ),
        (("-w", "yaml", "get", "a"), 4, "unsupported output format"),
        (
            ("del", "a", "b", "c"),
            128,
            "del command needs one argument as key and an optional argument as range_end",
        ),
        (("get", "a", "--bogus"), 1, "unknown flag: --bogus"),
    ],
)
def test_argument_errors_need_no_server(args: tuple[str, ...], code: int, error: str) -> None:
    run = invoke("--endpoints=127.0.0.1:1", "--command-timeout=100ms", *args)
    assert run.code == code
    assert run.stderr.splitlines()[-1] == f"Error: {error}"


def test_unreachable_cluster_is_context_deadline_exceeded() -> None:
    run = invoke("--endpoints=127.0.0.1:1", "--command-timeout=200ms", "get", "a")
    assert (run.code, run.stdout, run.stderr) == (1, b"", "Error: context deadline exceeded\n")


def test_debug_prints_the_flags_as_variables_without_the_password() -> None:
    run = invoke("--debug", "--password=secret", "--dial-timeout=1m30s", "--endpoints=127.0.0.1:1", "version")
    lines = run.stderr.splitlines()
    assert lines == sorted(lines)
    assert "ETCDCTL_DIAL_TIMEOUT=1m30s" in lines
    assert "ETCDCTL_ENDPOINTS=[127.0.0.1:1]" in lines
    assert "ETCDCTL_PASSWORD=<set>" in lines
    assert "secret" not in run.stderr


def test_lazy_server_command_keeps_its_own_arguments() -> None:
    assert lazy_command_in(["--endpoints", "server", "put"]) is None  # "server" is a flag value here
    assert lazy_command_in(["-w", "json", "server", "--name=x"]) == "server"
    assert lazy_command_in(["get", "server"]) is None
    argv = ["get", "k", "--prefix=true", "--hex=false", "--", "--prefix=true"]
    assert normalize_bool_flags(argv, cli) == ["get", "k", "--prefix", "--", "--prefix=true"]


def test_version_is_the_emulated_etcdctl() -> None:
    assert invoke("version").text == "etcdctl version: 3.4.23\nAPI version: 3.4\n"
    assert invoke("--version").text.startswith("etcdpy version ")


def _status(
    member_id: int, leader: int, learner: bool = False, errors: tuple[str, ...] = ()
) -> EndpointStatus:
    response = rpc_pb2.StatusResponse(
        header=rpc_pb2.ResponseHeader(member_id=member_id),
        version="3.4.23",
        dbSize=20480,
        leader=leader,
        raftTerm=3,
        raftIndex=9,
        raftAppliedIndex=8,
        isLearner=learner,
        errors=list(errors),
    )
    return EndpointStatus(f"ep-{member_id:x}", response)


def _rendered(table: Table) -> list[str]:
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    assert isinstance(console.file, io.StringIO)
    return plain_lines(console.file.getvalue())


def test_the_status_table_marks_the_leader_the_learners_and_the_followers() -> None:
    leader, learner, follower = 0xA1, 0xB2, 0xC3
    lines = _rendered(
        terminal.endpoint_status_table(
            [_status(leader, leader), _status(learner, leader, learner=True), _status(follower, leader)]
        )
    )
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["ep-a1"][1:4] == ["a1", "★", "leader"]
    assert rows["ep-b2"][1:3] == ["b2", "learner"]
    assert rows["ep-c3"][1:3] == ["c3", "follower"]
    assert rows["ep-b2"][3:] == ["3.4.23", "20", "kB", "3", "9", "8"]
    assert "errors" not in lines[1]


def test_the_status_table_shows_errors_only_when_an_endpoint_has_some() -> None:
    lines = _rendered(
        terminal.endpoint_status_table([_status(1, 0, errors=("etcdserver: no leader",)), _status(2, 0)])
    )
    assert lines[1].split()[-1] == "errors"
    assert lines[3].endswith("etcdserver: no leader")
    assert not any("leader" in line for line in lines[4:])  # with no leader, nobody is marked


def test_an_unknown_leader_is_said_rather_than_guessed() -> None:
    members = rpc_pb2.MemberListResponse(
        members=[rpc_pb2.Member(ID=0xA1, name="a", peerURLs=["http://a:2380"], clientURLs=["http://a:2379"])]
    )
    console = Console(file=io.StringIO(), width=200)
    console.print(terminal.member_list_table(members, leader_id=None))
    assert isinstance(console.file, io.StringIO)
    lines = plain_lines(console.file.getvalue())
    assert lines[3].split()[:3] == ["a1", "a", "voter"]
    assert lines[-1] == "leader unknown: no endpoint answered the status request"


class _Stdout(io.BytesIO):
    """A stdout that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "flag", "expected"),
    [(True, None, True), (False, None, False), (False, "1", True), (True, "0", False), (True, "", True)],
)
def test_stdout_is_a_terminal_by_isatty_unless_rich_flag_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tty: bool, flag: str | None, expected: bool
) -> None:
    if flag is None:
        monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    else:
        monkeypatch.setenv("TTY_COMPATIBLE", flag)
    assert Output(_Stdout(tty), io.BytesIO()).is_terminal() is expected
