"""Shared fixtures: real etcd / etcdpy server processes on free loopback ports.

Every process started through these fixtures is killed when the test ends.
Suite-wide options: ``--long`` runs tests marked ``slow``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Support modules are imported by name from any folder: procs.py here, and the unit
# harnesses (test_mvcc_harness, test_cli_support, watch_fakes) that tests elsewhere reuse.
sys.path.insert(0, str(Path(__file__).parent / "unit"))
sys.path.insert(0, str(Path(__file__).parent))

from procs import ETCD_BIN, ETCDCTL_BIN, ServerProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False, help="run slow tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member reference etcd 3.4 on free ports."""
    if ETCD_BIN is None or ETCDCTL_BIN is None:
        pytest.fail(
            "reference etcd not installed: run ./scripts/test, which installs etcd-server etcd-client"
        )
    server = ServerProcess("etcd", tmp_path / "etcd.data").start()
    yield server
    server.stop()


@pytest.fixture
def etcdpy_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member etcdpy server process on free ports."""
    server = ServerProcess("etcdpy", tmp_path / "etcdpy.data").start()
    yield server
    server.stop()
