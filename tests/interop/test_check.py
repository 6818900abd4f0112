"""check perf and check datascale: etcdpy's CLI against etcdctl 3.4, against etcd and against etcdpy.

Throughput, latencies and memory differ from run to run, so the transcripts are compared with the
numbers masked; etcdctl's progress bar, which it writes to stdout even when piped (carriage-return
frames), is dropped, as etcdpy draws its bar only on a terminal.  Everything else is byte for byte.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from procs import ETCDCTL_BIN, ServerProcess, free_port

from etcdpy.api.errors import ErrCompacted
from etcdpy.client import Client

pytestmark = pytest.mark.interop

NUMBER = re.compile(r"-?\d+(\.\d+)?")  # memory used may be negative: the RSS can shrink
PERF_LINES = [
    r"(PASS: Throughput is|FAIL: Throughput too low:) \d+ writes/s",
    r"(PASS: Slowest request took|Slowest request took too long:) \d+\.\d{6}s",
    r"(PASS: Stddev is|Stddev too high:) \d+\.\d{6}s",
    r"PASS|FAIL",
]


def argv(tool: str, endpoint: str, *args: str) -> list[str]:
    if tool == "etcdctl":
        assert ETCDCTL_BIN is not None
        return [ETCDCTL_BIN, "--endpoints", endpoint, *args]
    return [sys.executable, "-m", "etcdpy", "--endpoints", endpoint, *args]


def run(tool: str, endpoint: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run to the end; the output decoded as is (text mode would make the bar's carriage returns lines)."""
    done = subprocess.run(argv(tool, endpoint, *args), capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


BAR_FRAME = re.compile(r"\s*\d+ / \d+\s+\d+\.\d+%(?: \S+)?")


def lines(stdout: str) -> list[str]:
    """The output's lines without the progress bar's carriage-return frames.

    etcdctl's bar may not end its last frame with a newline before the report (its redraw races the
    end), so a frame is cut from the front of the line that follows it.
    """
    shown = []
    for line in stdout.split("\n"):
        if "\r" not in line:
            shown.append(line)
            continue
        rest = BAR_FRAME.sub("", line.rpartition("\r")[2], count=1)
        if rest:
            shown.append(rest)
    return shown


def masked(stdout: str) -> list[str]:
    return [NUMBER.sub("N", line) for line in lines(stdout)]


def check_perf_transcript(result: subprocess.CompletedProcess[str]) -> None:
    """etcdctl's perf report: three criteria then the verdict, exit 0 only on PASS."""
    shown = lines(result.stdout)
    assert shown[-1] == "", result.stdout  # the output ends with a newline
    report = shown[-5:-1]
    for line, pattern in zip(report, PERF_LINES, strict=True):
        assert re.fullmatch(pattern, line), (line, result.stdout)
    failed = [line for line in report[:3] if not line.startswith("PASS")]
    assert report[3] == ("FAIL" if failed else "PASS")
    assert result.returncode == (1 if failed else 0)


def test_check_perf_by_both_tools_against_etcd_and_by_etcdctl_against_etcdpy(
    etcd_server: ServerProcess, etcdpy_server: ServerProcess
) -> None:
    # The three 60-second runs go on at once, under prefixes of their own.
    runs = {
        name: subprocess.Popen(
            argv(tool, server.endpoint, "check", "perf", f"--prefix=/perf-{name}/"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, tool, server in [
            ("etcdctl-etcd", "etcdctl", etcd_server),
            ("etcdpy-etcd", "etcdpy", etcd_server),
            ("etcdctl-etcdpy", "etcdctl", etcdpy_server),
        ]
    }
    results = {}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())
    for name, result in results.items():
        assert result.stderr == "", (name, result.stderr)
        check_perf_transcript(result)
    # Nothing else: etcdctl prints the bar and the report, etcdpy (piped) only the report.
    assert lines(results["etcdpy-etcd"].stdout) == lines(results["etcdpy-etcd"].stdout)[-5:]
    for server in (etcd_server, etcdpy_server):
        with Client([server.endpoint]) as client:  # every check deleted its keys
            assert client.get("/perf-", prefix=True, count_only=True).count == 0


def test_check_perf_auto_compact_and_defrag_lines(etcdpy_server: ServerProcess) -> None:
    result = run("etcdpy", etcdpy_server.endpoint, "check", "perf", "--auto-compact", "--auto-defrag")
    check_perf_transcript(result)
    head = lines(result.stdout)[:4]
    revision = head[0].removeprefix("Compacting with revision ")
    assert head == [
        f"Compacting with revision {revision}",
        f"Compacted with revision {revision}",
        f'Defragmenting "{etcdpy_server.endpoint}"',
        f'Defragmented "{etcdpy_server.endpoint}"',
    ]
    with Client([etcdpy_server.endpoint]) as client:
        assert client.get("/etcdctl-check-perf/", prefix=True, count_only=True).count == 0
        with pytest.raises(ErrCompacted):  # the history before the deletion is gone
            client.get("x", revision=int(revision) - 1)


@pytest.mark.parametrize("flags", [(), ("--auto-compact", "--auto-defrag")])
def test_check_datascale_against_etcd_as_etcdctl(etcd_server: ServerProcess, flags: tuple[str, ...]) -> None:
    etcdctl = run("etcdctl", etcd_server.endpoint, "check", "datascale", *flags)
    ours = run("etcdpy", etcd_server.endpoint, "check", "datascale", *flags)
    for result in (etcdctl, ours):
        assert (result.returncode, result.stderr) == (0, "")
    assert lines(ours.stdout)[0] == (
        "Start data scale check for work load [10000 key-value pairs, 1024 bytes per key-value, "
        "50 concurrent clients]."
    )
    assert re.fullmatch(r"PASS: Approximate system memory used : -?\d+\.\d\d MB\.", lines(ours.stdout)[-2])
    assert masked(etcdctl.stdout) == masked(ours.stdout)


def test_check_datascale_against_etcdpy_as_etcdctl(etcdpy_server: ServerProcess) -> None:
    # etcdpy serves /metrics on its client port (process_resident_memory_bytes): both tools measure it.
    etcdctl = run("etcdctl", etcdpy_server.endpoint, "check", "datascale")
    ours = run("etcdpy", etcdpy_server.endpoint, "check", "datascale")
    for result in (etcdctl, ours):
        assert (result.returncode, result.stderr) == (0, "")
    assert re.fullmatch(r"PASS: Approximate system memory used : -?\d+\.\d\d MB\.", lines(ours.stdout)[-2])
    assert masked(etcdctl.stdout) == masked(ours.stdout)


@pytest.mark.parametrize("command", ["perf", "datascale"])
def test_bad_input_as_etcdctl(etcd_server: ServerProcess, command: str) -> None:
    with Client([etcd_server.endpoint]) as client:
        client.put("/taken/k", "v")
    cases = [
        (("--load=huge",), 4, "Error: unknown load option huge\n"),
        (
            ("--prefix=/taken/",),
            3,
            'Error: prefix "/taken/" has keys. Delete with etcdctl del --prefix /taken/ first\n',
        ),
    ]
    for flags, code, stderr in cases:
        for tool in ("etcdctl", "etcdpy"):
            result = run(tool, etcd_server.endpoint, "check", command, *flags)
            assert (tool, result.returncode, result.stdout, result.stderr) == (tool, code, "", stderr)


@pytest.mark.parametrize("command", ["perf", "datascale"])
def test_an_unreachable_cluster_fails_after_the_command_timeout(command: str) -> None:
    # etcdctl's perf check waits its whole 60 s duration for the first answer; etcdpy the command timeout.
    result = run("etcdpy", f"127.0.0.1:{free_port()}", "--command-timeout=1s", "check", command)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Error: context deadline exceeded\n")
