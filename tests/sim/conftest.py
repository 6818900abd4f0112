"""Options of the simulation suite.

    pytest tests/sim                        the default sweep: 2,000 seeds, in chunks xdist spreads,
                                            and 200 seeds applied through the real server (LevelDB)
    pytest tests/sim --sim-seeds 100000     a long sweep (and a tenth of it through the server)
    pytest tests/sim --sim-server-seeds 5000
                                            a sweep through the server's applier of its own size
    pytest tests/sim --sim-first-seed 5000  sweep other seeds
    pytest tests/sim --sim-steps 3000       longer runs (steps with faults; default 300)
    pytest tests/sim -k replay --sim-seed 1234
                                            replay one seed (also: python -m tests.sim.replay 1234)

The options exist when pytest is pointed at tests/sim (pytest only reads
options from conftest files it meets before collecting).  From the repository
root, use the environment instead: SIM_SEEDS=100000, SIM_SERVER_SEEDS, SIM_FIRST_SEED, SIM_STEPS,
SIM_SEED.
"""

from __future__ import annotations

import os

import pytest

from .plan import DEFAULT_STEPS

DEFAULT_SEEDS = 2000
# Runs through the server's applier cost ~0.1-0.3 s each (LevelDB): 200 take ~20-40 s on 2 cores.
# Unless told otherwise, the server sweep is this fraction of the toy sweep (200 of 2,000).
SERVER_SEEDS_PER_SEED = 0.1
SEEDS_PER_CHUNK = 50


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "deterministic raft simulation")
    group.addoption("--sim-seeds", type=int, default=None, help=f"seeds to sweep (default {DEFAULT_SEEDS})")
    group.addoption(
        "--sim-server-seeds",
        type=int,
        default=None,
        help="seeds to sweep with the server's applier on LevelDB (default: a tenth of --sim-seeds)",
    )
    group.addoption("--sim-first-seed", type=int, default=None, help="first seed of the sweep (default 0)")
    group.addoption(
        "--sim-steps", type=int, default=None, help=f"steps with faults per run ({DEFAULT_STEPS})"
    )
    group.addoption("--sim-seed", type=int, default=None, help="the seed test_replay replays (default 0)")


def _setting(config: pytest.Config, option: str, variable: str, default: int) -> int:
    value = config.getoption(option, default=None)
    if value is None:
        value = int(os.environ.get(variable, default))
    return int(value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    first = _setting(config, "sim_first_seed", "SIM_FIRST_SEED", 0)
    seeds = _setting(config, "sim_seeds", "SIM_SEEDS", DEFAULT_SEEDS)
    server_seeds = round(seeds * SERVER_SEEDS_PER_SEED)
    for fixture, option, variable, default in (
        ("seed_chunk", "sim_seeds", "SIM_SEEDS", seeds),
        ("server_seed_chunk", "sim_server_seeds", "SIM_SERVER_SEEDS", server_seeds),
    ):
        if fixture in metafunc.fixturenames:
            count = _setting(config, option, variable, default)
            chunks = [
                range(start, min(start + SEEDS_PER_CHUNK, first + count))
                for start in range(first, first + count, SEEDS_PER_CHUNK)
            ]
            metafunc.parametrize(fixture, chunks, ids=[f"seeds{c.start}-{c.stop - 1}" for c in chunks])
    if "replay_seed" in metafunc.fixturenames:
        metafunc.parametrize("replay_seed", [_setting(config, "sim_seed", "SIM_SEED", 0)])


@pytest.fixture
def sim_steps(request: pytest.FixtureRequest) -> int:
    """Sim_steps is the number of steps with faults each swept run takes."""
    return _setting(request.config, "sim_steps", "SIM_STEPS", DEFAULT_STEPS)
