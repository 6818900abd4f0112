"""``etcdpy completion <shell>`` prints the generated (committed) completion scripts; ``etcdpy help``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ETCDPY = (sys.executable, "-m", "etcdpy")


def etcdpy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ETCDPY, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_committed_script(shell: str) -> None:
    run = etcdpy("completion", shell)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == (ROOT / "completions" / f"etcdpy.{shell}").read_text()


def test_the_bash_script_completes_the_maintenance_commands() -> None:
    # What the script asks etcdpy when a user types `etcdpy ` and presses tab.
    run = etcdpy(env={"_ETCDPY_COMPLETE": "bash_complete", "COMP_WORDS": "etcdpy ", "COMP_CWORD": "1"})
    offered = {line.split(",", 1)[1] for line in run.stdout.splitlines()}
    assert {"check", "completion", "defrag", "help", "make-mirror"} <= offered
    run = etcdpy(env={"_ETCDPY_COMPLETE": "bash_complete", "COMP_WORDS": "etcdpy check ", "COMP_CWORD": "2"})
    assert {line.split(",", 1)[1] for line in run.stdout.splitlines()} == {"datascale", "perf"}


def test_completion_alone_shows_its_help_and_an_unknown_shell_fails() -> None:
    alone = etcdpy("completion")
    assert alone.returncode == 0
    assert "bash  Generate the autocompletion script for bash" in alone.stdout
    unknown = etcdpy("completion", "powershell")
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines()[-1] == "Error: No such command 'powershell'."


@pytest.mark.parametrize("path", [("get",), ("endpoint", "status"), ("check", "perf"), ("defrag",)])
def test_help_of_a_command_is_its_help_flag(path: tuple[str, ...]) -> None:
    via_help = etcdpy("help", *path)
    assert via_help.returncode == 0
    assert via_help.stdout == etcdpy(*path, "--help").stdout
    assert via_help.stdout.startswith(f"Usage: etcdpy {' '.join(path)} ")


def test_help_of_an_unknown_topic_says_so_and_shows_the_top_level_help() -> None:
    run = etcdpy("help", "nosuch", "thing")
    assert run.returncode == 0
    first, rest = run.stdout.split("\n", 1)
    assert first == "Unknown help topic [`nosuch` `thing`]"
    assert rest == etcdpy("--help").stdout
    assert etcdpy("help").stdout == etcdpy("--help").stdout
