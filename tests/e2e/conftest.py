"""Fixtures for tests against real `etcdpy server` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_tools import Running
from e2e_support import Stubs, connect
from procs import ServerProcess
from recipe_support import Recipes


@pytest.fixture
def stubs(etcdpy_server: ServerProcess) -> Iterator[Stubs]:
    client = connect(etcdpy_server)
    yield client
    client.channel.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "member.data"


@pytest.fixture
def recipes(shared_server: ServerProcess) -> Iterator[Recipes]:
    """Lock and Election stubs and a client on the module's server."""
    r = Recipes.open(shared_server.endpoint)
    yield r
    r.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """CLI processes a test starts in the background; any still running at the end are stopped."""
    started: list[Running] = []
    yield started
    for proc in started:
        proc.stop()
