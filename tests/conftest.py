"""Shared fixtures: real etcd / etcdpy server processes on free loopback ports (`server`, `shared_server`,
`etcd_server`, `etcdpy_server`, all built by `_serving`).

Every process started through these fixtures is killed when the test (for `shared_server`, the module)
ends.
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
from tlscerts import PKI, make_pki


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False, help="run slow tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "server_kinds(*kinds): run the tests that use `server` or `shared_server` once per kind"
        ' ("etcd", "etcdpy", or a pytest.param of one)',
    )
    config.addinivalue_line(
        "markers", "server_flags(*flags): extra command-line flags for `server` and `shared_server`"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("server_kinds")
    if marker is None:
        return
    for name in ("server", "shared_server"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, marker.args, indirect=True)


def _serving(request: pytest.FixtureRequest, kind: str, data_dir: Path) -> Iterator[ServerProcess]:
    """A one-member ``kind`` server ("etcd" or "etcdpy") on free ports, stopped when the fixture ends."""
    if kind == "etcd" and (ETCD_BIN is None or ETCDCTL_BIN is None):
        pytest.fail(
            "reference etcd not installed: run ./scripts/test, which installs etcd-server etcd-client"
        )
    marker = request.node.get_closest_marker("server_flags")
    flags = list(marker.args) if marker is not None else []
    server = ServerProcess(kind, data_dir, extra_args=flags).start()
    yield server
    server.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member server for one test: etcdpy, or each kind ``@pytest.mark.server_kinds(...)`` names;
    flags from ``@pytest.mark.server_flags(...)``."""
    kind: str = getattr(request, "param", "etcdpy")
    yield from _serving(request, kind, tmp_path / f"{kind}.data")


@pytest.fixture(scope="module")
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Like `server`, but one per module, shared by its tests (starting one per test would dominate the
    run time): each test must work under names of its own."""
    kind: str = getattr(request, "param", "etcdpy")
    yield from _serving(request, kind, tmp_path_factory.mktemp(kind) / "data")


@pytest.fixture
def etcd_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member reference etcd 3.4 on free ports."""
    yield from _serving(request, "etcd", tmp_path / "etcd.data")


@pytest.fixture
def etcdpy_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A one-member etcdpy server process on free ports."""
    yield from _serving(request, "etcdpy", tmp_path / "etcdpy.data")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The test certificates of tlscerts.py (CA, server, peer, client, expired, wrong host...), written
    once per session: tests that change files on disk make their own with `make_pki`."""
    return make_pki(tmp_path_factory.mktemp("pki"))
