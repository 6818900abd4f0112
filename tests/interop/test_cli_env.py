"""Global flags: ETCDCTL_* variables, flags after the command, Go bool syntax, lazy server import."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from procs import ETCDCTL_BIN, ServerProcess
from test_cli_support import invoke

pytestmark = pytest.mark.interop


def test_environment_variables_set_global_flags(etcd_server: ServerProcess) -> None:
    env: dict[str, str | None] = {"ETCDCTL_ENDPOINTS": etcd_server.endpoint}
    assert invoke("put", "k", "v", env=env).text == "OK\n"
    assert invoke("get", "k", env={**env, "ETCDCTL_HEX": "true"}).text == "\\x6b\n\\x76\n"
    assert invoke("get", "k", env={**env, "ETCDCTL_WRITE_OUT": "json"}).text.startswith('{"header":')
    assert (
        invoke("get", "k", env={**env, "ETCDCTL_COMMAND_TIMEOUT": "1m30s", "ETCDCTL_DIAL_TIMEOUT": "3s"}).code
        == 0
    )
    bad = invoke("get", "k", env={**env, "ETCDCTL_DIAL_TIMEOUT": "soon"})
    assert bad.code == 1
    assert (
        'Error: invalid argument "soon" for "--dial-timeout" flag: time: invalid duration "soon"'
        in bad.stderr
    )


def test_a_flag_and_its_variable_together_are_fatal_like_etcdctl(etcd_server: ServerProcess) -> None:
    run = invoke(
        f"--endpoints={etcd_server.endpoint}", "get", "k", env={"ETCDCTL_ENDPOINTS": etcd_server.endpoint}
    )
    assert run.code == 1 and run.stdout == b""
    assert run.stderr.endswith(
        ' C | pkg/flags: conflicting environment variable "ETCDCTL_ENDPOINTS" is shadowed by corresponding '
        "command-line flag (either unset environment variable or disable flag)\n"
    )


def test_unknown_etcdctl_variables_only_warn(etcd_server: ServerProcess) -> None:
    run = invoke(f"--endpoints={etcd_server.endpoint}", "get", "k", env={"ETCDCTL_FOO": "1"})
    assert run.code == 0
    assert run.stderr.endswith(" W | pkg/flags: unrecognized environment variable ETCDCTL_FOO=1\n")


def test_global_flags_work_after_the_command_and_with_go_bool_syntax(etcd_server: ServerProcess) -> None:
    ep = f"--endpoints={etcd_server.endpoint}"
    invoke(ep, "put", "k", "v")
    assert invoke("get", "k", "-w", "json", ep).text.startswith('{"header":')
    assert invoke(ep, "--hex=true", "get", "k").text == "\\x6b\n\\x76\n"
    assert invoke(ep, "--hex=false", "get", "k").text == "k\nv\n"
    assert invoke(ep, "get", "k", "--prefix=true", "--keys-only=false").text == "k\nv\n"
    assert invoke(ep, "--insecure-transport=true", "--insecure-discovery=false", "get", "k").code == 0


def test_help_does_not_import_the_server() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['etcdpy', '--help']\n"
        "try:\n"
        "    runpy.run_module('etcdpy', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(any(m.startswith('etcdpy.server') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert re.search(r"\bserver +Run an etcdpy member\.", out)
    assert out.strip().endswith("False")


def test_user_and_password_authenticate_like_etcdctl(etcd_server: ServerProcess) -> None:
    assert ETCDCTL_BIN is not None
    for setup in (["user", "add", "root:pw"], ["auth", "enable"]):
        subprocess.run(
            [ETCDCTL_BIN, f"--endpoints={etcd_server.endpoint}", *setup], check=True, capture_output=True
        )
    ep = f"--endpoints={etcd_server.endpoint}"
    anonymous = invoke(ep, "put", "k", "v")
    assert (anonymous.code, anonymous.stderr) == (1, "Error: etcdserver: user name is empty\n")
    assert invoke(ep, "--user", "root:pw", "put", "k", "v").text == "OK\n"
    assert invoke(ep, "--user", "root", "--password", "pw", "get", "k").text == "k\nv\n"
    wrong = invoke(ep, "--user", "root:nope", "get", "k")
    assert (wrong.code, wrong.stderr) == (
        2,
        "Error: etcdserver: authentication failed, invalid user ID or password\n",
    )


def test_password_prompt_happens_once_for_all_endpoints(etcd_server: ServerProcess) -> None:
    endpoints = f"--endpoints={etcd_server.endpoint},{etcd_server.endpoint}"
    run = invoke(endpoints, "--user=root", "endpoint", "health", stdin=b"pw\n")
    assert run.code == 0
    assert run.stdout.count(b"Password:") == 1  # on stdout, as etcdctl's speakeasy prompt
    assert run.stderr.count("is healthy") == 2
