"""Chaos suite options: ``--chaos-seed N`` reruns a scenario with that seed, ``--chaos-time S`` sets
the seconds of faults per run (and, with ``--long``, the length of the long run), ``--chaos-dir``
where failing runs leave their folders.

These options exist when pytest is pointed at ``tests/chaos`` (or a test in it), as the
printed rerun commands are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos")
    group.addoption(
        "--chaos-seed", type=int, default=None, help="seed for every chaos run (default: fixed per test)"
    )
    group.addoption(
        "--chaos-time", type=float, default=None, help="seconds of faults per run; with --long, in all"
    )
    group.addoption(
        "--chaos-dir", type=Path, default=None, help="folder for failing runs' histories and data dirs"
    )


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int | None:
    seed: int | None = request.config.getoption("--chaos-seed", default=None)
    return seed


@pytest.fixture
def chaos_time(request: pytest.FixtureRequest) -> float | None:
    seconds: float | None = request.config.getoption("--chaos-time", default=None)
    return seconds


@pytest.fixture
def chaos_dir(request: pytest.FixtureRequest) -> Path:
    folder: Path | None = request.config.getoption("--chaos-dir", default=None)
    return folder or Path(tempfile.gettempdir()) / "etcdpy-chaos"
