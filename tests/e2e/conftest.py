"""Fixtures for tests against real `etcdpy server` processes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_tools import Running
from e2e_support import Stubs, connect
from procs import ServerProcess
from recipe_support import Recipes

from etcdpy.client import Client

_names = itertools.count()


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


@pytest.fixture
def shared_client(shared_server: ServerProcess) -> Iterator[Client]:
    """A client of the module's `shared_server`."""
    with Client(shared_server.endpoint) as client:
        yield client


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock or election name no other test uses, after its module: ``lock_cli-3``."""
    return f"{request.module.__name__.removeprefix('test_')}-{next(_names)}"
