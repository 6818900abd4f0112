"""Differential tests for lock and elect: etcdctl vs etcd == etcdctl vs etcdpy == etcdpy CLI vs etcd.

One fixed sequence of lock and elect runs, each on its own, so revisions agree
between servers; a holder is interrupted once it has printed everything.
Lease IDs (in keys, in hex and decimal), cluster and member ids and terms are
masked.  Exit codes of a failing command (etcdpy passes them on, etcdctl 3.4
exits 1) are covered by tests/e2e/test_lock_cli.py, not here.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from interop_runner import ETCDPY_CLI, ServerFacts, Transcript, assert_same_transcripts, transcript_on
from procs import ETCDCTL_BIN, ServerProcess, communicate_or_stacks

pytestmark = pytest.mark.interop

FORMATS = ("simple", "json", "fields")
# When a holder has printed its whole key (simple: key and value lines; json: one document; fields: to Count).
PRINTED: dict[str, Callable[[str], bool]] = {
    "simple": lambda text: text.count("\n") >= 2,
    "json": lambda text: text.endswith("}\n"),
    "fields": lambda text: '"Count" :' in text and text.endswith("\n"),
}
QUEUE_KEY = re.compile(r"\b(lk|el)/([0-9a-f]{1,16})\b")


def _run(tool: Sequence[str], endpoint: str, *argv: str) -> tuple[str, str, int]:
    proc = subprocess.run(
        [*tool, f"--endpoints={endpoint}", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return proc.stdout, proc.stderr, proc.returncode


def _hold(tool: Sequence[str], endpoint: str, fmt: str, *argv: str) -> tuple[str, str, int]:
    """Run a lock/elect holder until it has printed its key in ``fmt``, then interrupt it."""
    proc = subprocess.Popen(
        [*tool, f"--endpoints={endpoint}", "-w", fmt, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1):
            printed.append(chunk)
            if PRINTED[fmt]("".join(printed)):
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert done.wait(30), f"{argv} printed only {''.join(printed)!r}"
        proc.send_signal(signal.SIGINT)
        _, errors = communicate_or_stacks(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return "".join(printed), errors, proc.returncode


def transcript(tool: Sequence[str], server: ServerProcess) -> Transcript:
    """The lock and elect steps with one CLI against one fresh server; masked results."""
    facts = ServerFacts.probe(server.endpoint, server.peer_port)
    ep = server.endpoint
    out: Transcript = []

    def record(argv: Sequence[str], result: tuple[str, str, int]) -> None:
        stdout, errors, code = result
        out.append((" ".join(argv), _mask(stdout, facts), _mask(errors, facts), code))

    record(["put"], _run(tool, ep, "put", "a", "1"))
    env_echo = (
        "sh",
        "-c",
        'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"',
    )  # uncontended: both tools give the create revision
    record(["lock", "--", *env_echo], _run(tool, ep, "lock", "lk", "--", *env_echo))
    for fmt in FORMATS:
        record(["lock", "-w", fmt], _hold(tool, ep, fmt, "lock", "lk"))
        record(["elect", "-w", fmt], _hold(tool, ep, fmt, "elect", "el", "proposal"))
    for argv in (
        ("lock",),
        ("elect",),
        ("elect", "el"),
        ("elect", "-l", "el", "p"),
        ("get", "", "--from-key"),
    ):
        record(argv, _run(tool, ep, *argv, "-w", "json"))
    return out


def _mask(text: str, facts: ServerFacts) -> str:
    if text.startswith("{"):
        text = "\n".join(_mask_json(line) for line in text.splitlines()) + "\n"
    leases = {match.group(2) for match in QUEUE_KEY.finditer(text)}
    for lease_hex in leases:
        text = text.replace(lease_hex, "<LEASE>").replace(str(int(lease_hex, 16)), "<LEASE>")
    for number, name in ((facts.cluster_id, "<CLUSTER>"), (facts.member_id, "<MEMBER>")):
        text = text.replace(str(number), name)
    return re.sub(r'"raft_term": ?\d+|"RaftTerm" : \d+', "<TERM>", text)


def _mask_json(line: str) -> str:
    """A JSON document with its keys and values decoded (a base64 key hides its lease ID from masking)."""
    document = json.loads(line)
    for kv in document.get("kvs", []):
        for field in ("key", "value"):
            if field in kv:
                kv[field] = base64.b64decode(kv[field]).decode("utf-8", "backslashreplace")
        if "lease" in kv and (match := QUEUE_KEY.search(kv["key"])) is not None:
            assert kv["lease"] == int(match.group(2), 16), "the queue key names its lease"
    return json.dumps(document, sort_keys=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Transcript:
    if ETCDCTL_BIN is None:
        pytest.fail("the reference etcdctl is not installed: run ./scripts/test")
    return transcript_on("etcd", [ETCDCTL_BIN], tmp_path_factory.mktemp("ref"), transcript)


def test_etcdctl_lock_and_elect_against_etcdpy_match_etcd(reference: Transcript, tmp_path: Path) -> None:
    assert ETCDCTL_BIN is not None
    assert_same_transcripts(reference, transcript_on("etcdpy", [ETCDCTL_BIN], tmp_path, transcript))


def test_etcdpy_lock_and_elect_against_etcd_match_etcdctl(reference: Transcript, tmp_path: Path) -> None:
    assert_same_transcripts(reference, transcript_on("etcd", ETCDPY_CLI, tmp_path, transcript))
