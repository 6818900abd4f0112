"""Run the differential cases with one CLI against one server and normalise the results.

Normalisation masks only what legitimately differs between two fresh servers:
cluster and member ids, raft terms, db sizes, ports, and the time a health
check took (tables are also compared with their padding collapsed, since a
masked value may change a column's width).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from interop_cases import CASES, Case, Step
from procs import ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli import cli
from etcdpy.client import Client

ETCDPY_CLI = (sys.executable, "-m", "etcdpy")

# argv, stdin, environment changes (None: unset) -> stdout, stderr, exit code
Invoker = Callable[[list[str], bytes, dict[str, str | None]], tuple[bytes, bytes, int]]


def subprocess_invoker(tool: Sequence[str]) -> Invoker:
    """Run ``tool`` as a process per step."""

    def invoke(argv: list[str], stdin: bytes, env: dict[str, str | None]) -> tuple[bytes, bytes, int]:
        merged = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
        proc = subprocess.run([*tool, *argv], input=stdin, capture_output=True, env=merged, timeout=60)
        return proc.stdout, proc.stderr, proc.returncode

    return invoke


def etcdpy_in_process(argv: list[str], stdin: bytes, env: dict[str, str | None]) -> tuple[bytes, bytes, int]:
    """Run etcdpy's CLI in this process (the same click group the console script runs)."""
    result = CliRunner().invoke(cli, argv, input=stdin, env=env, prog_name="etcdpy")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.stdout_bytes, result.stderr_bytes, result.exit_code


@dataclass(frozen=True)
class Result:
    case: str
    index: int
    argv: tuple[str, ...]
    stdout: str
    errors: str
    code: int

    def describe(self) -> str:
        return f"[{self.case} #{self.index}] {' '.join(self.argv)}"


@dataclass(frozen=True)
class ServerFacts:
    """What masking needs to know about the server a run used."""

    endpoint: str
    ports: tuple[int, ...]
    cluster_id: int
    member_id: int

    @classmethod
    def probe(cls, endpoint: str, peer_port: int) -> ServerFacts:
        with Client([endpoint]) as client:
            header = client.member_list().header
        return cls(
            endpoint, (int(endpoint.rsplit(":", 1)[1]), peer_port), header.cluster_id, header.member_id
        )


def _argv(step: Step, endpoint: str) -> tuple[list[str], dict[str, str]]:
    argv = [a.replace("{ep}", endpoint) for a in step.argv]
    env = {k: v.replace("{ep}", endpoint) for k, v in step.env.items()}
    if not any(a.startswith("--endpoints") for a in argv) and "ETCDCTL_ENDPOINTS" not in env:
        argv = [f"--endpoints={endpoint}", *argv]
    return argv, env


def run_cases(invoke: Invoker, facts: ServerFacts, cases: Sequence[Case] = CASES) -> list[Result]:
    """Run every step of every case in order; return normalised results."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ETCDCTL_")}
    results = []
    for case in cases:
        for index, step in enumerate(case.steps):
            argv, env = _argv(step, facts.endpoint)
            out, err, code = invoke(argv, step.stdin, {**unset, **env})
            stdout = _stdout(out, step)
            errors = "\n".join(
                line for line in err.decode("utf-8", "replace").splitlines() if line.startswith("Error:")
            )
            results.append(
                Result(
                    case.name, index, step.argv, mask(stdout, facts, step), mask(errors, facts, step), code
                )
            )
    return results


def _stdout(raw: bytes, step: Step) -> str:
    if step.usage:
        return "<usage>" if raw.strip() else ""
    if step.proto is None or not raw:
        return raw.decode("utf-8", "backslashreplace")
    message = getattr(pb, step.proto).FromString(raw)
    _clear_headers(message)
    return repr(message.SerializeToString())


def _clear_headers(message: object) -> None:
    """Zero cluster/member ids and raft terms in every ResponseHeader of a decoded response."""
    if isinstance(message, pb.ResponseHeader):
        message.cluster_id = message.member_id = message.raft_term = 0
        return
    if isinstance(message, pb.Member):
        message.ID = 0
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is None:
        return
    for field in descriptor.fields:
        if field.message_type is None:
            continue
        value = getattr(message, field.name)
        items = value if field.is_repeated else [value]
        for item in items:
            _clear_headers(item)


def mask(text: str, facts: ServerFacts, step: Step) -> str:
    for number, name in ((facts.cluster_id, "<CLUSTER_ID>"), (facts.member_id, "<MEMBER_ID>")):
        text = text.replace(str(number), name).replace(f"{number:x}", name)
    for port in facts.ports:
        # after a host only ("127.0.0.1:", "[::1]:"): a JSON figure such as "dbSize":20480 may equal a port
        text = re.sub(rf"(?<=[\w\]]:){port}\b", "<PORT>", text)
    text = re.sub(r'"(raft_term|raftTerm)":\d+', r'"\1":<TERM>', text)
    text = re.sub(r'"(dbSize|dbSizeInUse)":\d+', r'"\1":<SIZE>', text)
    text = re.sub(r'"(RaftTerm|DBSize)" : \d+', r'"\1" : <N>', text)
    text = re.sub(r'took = \S+|"took":"[^"]*"|"Took" : \S+', "<TOOK>", text)
    if "status" in step.argv and "endpoint" in step.argv:
        text = _mask_status_rows(text)
    if "table" in step.argv:
        text = re.sub(r"-{2,}", "-", re.sub(r" {2,}", " ", text))
        if "health" in step.argv:
            text = re.sub(r"\| (true|false) \| [^|]+ \|", r"| \1 | <TOOK> |", text)
    return text


def _mask_status_rows(text: str) -> str:
    """db size (column 4) and raft term (column 7) of simple and table status rows."""
    out = []
    for line in text.splitlines():
        sep = "|" if line.startswith("|") else ", "
        cells = line.split(sep)
        offset = 1 if sep == "|" else 0
        if len(cells) >= 9 + offset and re.search(r"\d", cells[3 + offset]):
            cells[3 + offset] = " <SIZE> " if sep == "|" else "<SIZE>"
            cells[6 + offset] = " <TERM> " if sep == "|" else "<TERM>"
        out.append(sep.join(cells))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def differences(expected: Sequence[Result], actual: Sequence[Result]) -> list[str]:
    """One readable paragraph per step whose normalised results differ."""
    report = []
    for want, got in zip(expected, actual, strict=True):
        if (want.stdout, want.errors, want.code) != (got.stdout, got.errors, got.code):
            report.append(
                f"{want.describe()}\n"
                f"  expected (code {want.code}): stdout={want.stdout!r} errors={want.errors!r}\n"
                f"  actual   (code {got.code}): stdout={got.stdout!r} errors={got.errors!r}"
            )
    return report


# Per step: the command, its masked stdout and errors, its exit code.
Transcript = list[tuple[str, str, str, int]]


def transcript_on(
    kind: str,
    tool: Sequence[str],
    tmp: Path,
    transcript: Callable[[Sequence[str], ServerProcess], Transcript],
) -> Transcript:
    """The ``transcript`` ``tool`` makes against a fresh one-member ``kind`` server, stopped afterwards."""
    server = ServerProcess(kind, tmp / "data").start()
    try:
        return transcript(tool, server)
    finally:
        server.stop()


def assert_same_transcripts(expected: Transcript, actual: Transcript) -> None:
    report = [
        f"{want[0]}\n  expected: {want[1:]!r}\n  actual:   {got[1:]!r}"
        for want, got in zip(expected, actual, strict=True)
        if want != got
    ]
    assert not report, f"{len(report)} of {len(expected)} steps differ:\n" + "\n".join(report)
