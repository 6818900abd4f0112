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
from procs import ServerProcess

from etcdpy.client import Client

_names = itertools.count()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the module's `shared_server` runs against the reference etcd, then etcdpy."""
    if "shared_server" in metafunc.fixturenames:
        metafunc.parametrize("shared_server", ["etcd", "etcdpy"], indirect=True)


@pytest.fixture
def recipe_client(shared_server: ServerProcess) -> Iterator[Client]:
    with Client(shared_server.endpoint) as client:
        yield client


@pytest.fixture
def recipe_name() -> str:
    """A lock/election name no other test uses."""
    return f"recipe-{next(_names)}"
