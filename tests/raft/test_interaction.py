"""Golden-file interaction scripts: each testdata/*.txt is run and its transcript compared.

File format: blocks separated by blank lines. A block is optional `#` comment
lines, a command line, optional input lines, a `----` line, then the expected
output. Run `pytest tests/raft --rewrite` to regenerate the expected outputs,
then review the diff by hand before committing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from raft.interaction import Env, parse_command

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


@dataclass
class Block:
    comments: list[str]
    command: str
    input: list[str]
    expected: list[str]
    line: int


def parse_script(text: str) -> list[Block]:
    """Parse_script splits a script into blocks."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        comments = []
        while i < len(lines) and lines[i].startswith("#"):
            comments.append(lines[i])
            i += 1
        start = i
        command = lines[i]
        i += 1
        body = []
        while lines[i] != "----":
            body.append(lines[i])
            i += 1
        i += 1
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        blocks.append(Block(comments, command, body, expected, start + 1))
    return blocks


def render(blocks: list[Block], outputs: list[str]) -> str:
    parts = []
    for b, out in zip(blocks, outputs, strict=True):
        parts.append("\n".join([*b.comments, b.command, *b.input, "----", out]))
    return "\n\n".join(parts) + "\n"


def test_scripts_present() -> None:
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_interaction(script: Path, rewrite: bool) -> None:
    blocks = parse_script(script.read_text())
    env = Env()
    outputs = []
    for b in blocks:
        out = env.handle(parse_command(b.command, b.input))
        outputs.append(out)
        if not rewrite:
            assert out.splitlines() == b.expected, f"{script.name}:{b.line}: {b.command}"
    if rewrite:
        script.write_text(render(blocks, outputs))


def test_parse_round_trip() -> None:
    text = "# c\ncmd 1 a=(1,2)\nin\n----\nout1\nout2\n\nother\n----\nok\n"
    blocks = parse_script(text)
    assert [b.command for b in blocks] == ["cmd 1 a=(1,2)", "other"]
    assert render(blocks, ["out1\nout2", "ok"]) == text
