"""Completions and man pages are generated from the command tree and must not go stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tree(base: Path) -> dict[str, str]:
    return {
        str(p.relative_to(base)): p.read_text()
        for folder in ("completions", "man")
        for p in sorted((base / folder).rglob("*"))
        if p.is_file()
    }


def test_generated_docs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gendocs.py"), str(tmp_path)], check=True)
    fresh, committed = _tree(tmp_path), _tree(ROOT)
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"regenerate with `python scripts/gendocs.py`; stale: {stale}"


def test_every_command_has_a_man_page_and_every_shell_a_completion() -> None:
    pages = {p.name for p in (ROOT / "man").glob("*.1")}
    for command in ("put", "get", "del", "txn", "compaction", "endpoint-status", "member-list", "version"):
        assert f"etcdpy-{command}.1" in pages
    assert {p.name for p in (ROOT / "completions").iterdir()} == {"etcdpy.bash", "etcdpy.zsh", "etcdpy.fish"}
    assert "_ETCDPY_COMPLETE" in (ROOT / "completions" / "etcdpy.bash").read_text()


def test_completion_candidates_come_from_the_command_tree() -> None:
    env = {"_ETCDPY_COMPLETE": "bash_complete", "COMP_WORDS": "etcdpy endpoint st", "COMP_CWORD": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "etcdpy"], capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT
    ).stdout
    assert out.split() == ["plain,status"]
