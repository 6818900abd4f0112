"""Fixtures for tests against real `etcdpy server` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Stubs, connect
from procs import ServerProcess


@pytest.fixture
def stubs(etcdpy_server: ServerProcess) -> Iterator[Stubs]:
    client = connect(etcdpy_server)
    yield client
    client.channel.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "member.data"
