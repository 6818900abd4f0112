"""Differential tests for watch and lease: etcdctl vs etcd == etcdctl vs etcdpy == etcdpy CLI vs etcd.

Watches replay history (``--rev``) so their output does not depend on timing;
each runs until a short timeout (etcdctl never exits on its own) and what it
printed by then is compared.  Lease IDs, remaining TTLs, ids and terms are masked.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from interop_runner import ETCDPY_CLI, ServerFacts, Transcript, assert_same_transcripts, transcript_on
from procs import ETCDCTL_BIN, ServerProcess

from etcdpy.api.etcdserverpb import rpc_pb2 as pb

pytestmark = pytest.mark.interop

WATCH_SECONDS = 1.5  # long enough to replay a few revisions through either tool
FORMATS = ("simple", "json", "fields", "protobuf")
EXEC = ("sh", "-c", 'echo "$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"')


def _run(tool: Sequence[str], endpoint: str, *argv: str, timeout: float = 30.0) -> tuple[bytes, str, int]:
    """(stdout, the Error: lines, exit code); a watch still running at ``timeout`` reports code -1."""
    command = [*tool, f"--endpoints={endpoint}", *argv]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as expired:
        out, err, code = expired.stdout or b"", expired.stderr or b"", -1
    errors = [
        line
        for line in err.decode("utf-8", "replace").splitlines()
        if line.startswith(("Error:", "watch was canceled", "command "))
    ]
    return out, "\n".join(errors), code


def transcript(tool: Sequence[str], server: ServerProcess) -> Transcript:
    """Run the watch and lease steps with one CLI against one fresh server; masked results."""
    facts = ServerFacts.probe(server.endpoint, server.peer_port)
    ep = server.endpoint
    out: Transcript = []

    def step(*argv: str, timeout: float = 30.0) -> str:
        raw, errors, code = _run(tool, ep, *argv, timeout=timeout)
        stdout = (
            _decoded_protobuf(argv, raw) if "protobuf" in argv else raw.decode("utf-8", "backslashreplace")
        )
        if lease_id:
            stdout = stdout.replace(lease_id, "<LEASE>").replace(str(int(lease_id, 16)), "<LEASE>")
        out.append(
            (" ".join(a.replace(lease_id, "<LEASE>") if lease_id else a for a in argv), stdout, errors, code)
        )
        return stdout

    lease_id = ""

    for key, value in (("wk", "v1"), ("wk", "v2"), ("wk2", "a b"), ("wk", "\x01bin")):
        step("put", key, value)
    step("del", "wk")
    for options in (("--prefix",), ()):
        step("watch", "--rev", "2", *options, "wk", timeout=WATCH_SECONDS)
    for fmt in FORMATS:
        step("watch", "--rev", "2", "--prev-kv", "wk", "-w", fmt, timeout=WATCH_SECONDS)
    step("watch", "--rev", "2", "wk", "wk3", timeout=WATCH_SECONDS)
    step("watch", "--rev", "3", "--prefix", "wk", "--", *EXEC, timeout=WATCH_SECONDS)
    step("watch", timeout=WATCH_SECONDS)
    step("watch", "--prefix", "a", "b", timeout=WATCH_SECONDS)
    step("watch", "a", "--", timeout=WATCH_SECONDS)
    step("compaction", "4")
    step("watch", "--rev", "2", "wk", timeout=WATCH_SECONDS)
    step("watch", "--rev", "2", "wk", "-w", "json", timeout=WATCH_SECONDS)

    granted = step("lease", "grant", "100")
    lease_id = granted.split()[1] if granted.startswith("lease ") else "0"
    step("put", "--lease", lease_id, "lk", "v")
    for fmt in FORMATS:
        step("lease", "timetolive", lease_id, "-w", fmt)
        step("lease", "timetolive", "--keys", lease_id, "-w", fmt)
        step("lease", "keep-alive", "--once", lease_id, "-w", fmt)
        step("lease", "list", "-w", fmt)
    step("lease", "grant", "1", "-w", "fields")
    step("lease", "revoke", lease_id, "-w", "json")
    step("get", "lk")
    for fmt in ("simple", "json", "fields"):
        step("lease", "timetolive", lease_id, "-w", fmt)
        step("lease", "revoke", lease_id, "-w", fmt)
        step("lease", "keep-alive", "--once", lease_id, "-w", fmt)
    step("lease", "grant")
    step("lease", "grant", "x")
    step("lease", "grant", "9000000001")
    step("lease", "grant", "10", "-w", "table")
    step("lease", "revoke")
    step("lease", "revoke", "zz")
    step("lease", "timetolive")
    step("lease", "keep-alive")
    return [(argv, _mask(stdout, facts), _mask(errors, facts), code) for argv, stdout, errors, code in out]


def _decoded_protobuf(argv: Sequence[str], raw: bytes) -> str:
    """-w protobuf output with the header ids zeroed (back-to-back messages parse as one, merged)."""
    if not raw:
        return ""
    message: pb.WatchResponse | pb.ResponseHeader
    if argv[0] == "watch":
        message = pb.WatchResponse.FromString(raw)
        header = message.header
    else:
        message = header = pb.ResponseHeader.FromString(raw)
    header.cluster_id = header.member_id = header.raft_term = 0
    return repr(message.SerializeToString())


def _mask(text: str, facts: ServerFacts) -> str:
    for number, name in ((facts.cluster_id, "<CLUSTER>"), (facts.member_id, "<MEMBER>")):
        text = text.replace(str(number), name)
    for lease_hex in set(re.findall(r"lease ([0-9a-f]{16})", text)):
        text = text.replace(lease_hex, "<LEASE>").replace(str(int(lease_hex, 16)), "<LEASE>")
    text = re.sub(r'("ID"|"id"|"ID" :) ?:?\d{6,}', r"\1<LEASE>", text)
    text = re.sub(r"remaining\(\d+s\)", "remaining(<N>)", text)
    text = re.sub(r'"ttl":\d+', '"ttl":<N>', text)
    text = re.sub(r'"TTL" : (?!-1)\d+', '"TTL" : <N>', text)
    text = re.sub(r'"raft_term":\d+|"RaftTerm" : \d+', "<TERM>", text)
    return text


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    if ETCDCTL_BIN is None:
        pytest.fail("the reference etcdctl is not installed: run ./scripts/test")
    return transcript_on("etcd", [ETCDCTL_BIN], tmp_path_factory.mktemp("ref"), transcript)


def test_etcdctl_against_etcdpy_matches_etcd(reference: Transcript, tmp_path: Path) -> None:
    assert ETCDCTL_BIN is not None
    assert_same_transcripts(reference, transcript_on("etcdpy", [ETCDCTL_BIN], tmp_path, transcript))


def test_etcdpy_cli_against_etcd_matches_etcdctl(reference: Transcript, tmp_path: Path) -> None:
    assert_same_transcripts(reference, transcript_on("etcd", ETCDPY_CLI, tmp_path, transcript))
