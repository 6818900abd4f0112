"""Fixtures for the concurrency recipe tests: one server of each kind per module, a client, a fresh name.

The recipes must behave the same against the reference etcd and etcdpy, so
every test taking `recipe_client` runs against both.  A server is shared by
the tests of a module (starting one per test would dominate the run time);
each test works under its own `recipe_name`, so they cannot see each other's keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from procs import ETCD_BIN, ETCDCTL_BIN, ServerProcess

from etcdpy.client import Client

_names = itertools.count()


@pytest.fixture(scope="module", params=["etcd", "etcdpy"])
def recipe_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A one-member server (reference etcd, then etcdpy) shared by a module's tests."""
    kind: str = request.param
    if kind == "etcd" and (ETCD_BIN is None or ETCDCTL_BIN is None):
        pytest.fail(
            "reference etcd not installed: run ./scripts/test, which installs etcd-server etcd-client"
        )
    server = ServerProcess(kind, tmp_path_factory.mktemp(kind) / "data").start()
    yield server
    server.stop()


@pytest.fixture
def recipe_client(recipe_server: ServerProcess) -> Iterator[Client]:
    with Client(recipe_server.endpoint) as client:
        yield client


@pytest.fixture
def recipe_name() -> str:
    """A lock/election name no other test uses."""
    return f"recipe-{next(_names)}"
