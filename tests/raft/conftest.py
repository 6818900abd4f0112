"""Raft test options: --rewrite regenerates the golden transcripts in testdata/."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite tests/raft/testdata/*.txt with the actual transcripts (pytest tests/raft --rewrite)",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    """Rewrite says whether golden files should be regenerated instead of compared."""
    return bool(request.config.getoption("--rewrite", default=False))
