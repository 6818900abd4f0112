"""``python -m etcdpy.chaos``: run chaos scenarios by name, or for a given time, and print verdicts."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import click

from etcdpy.chaos.runner import SCENARIOS, run_scenario


@click.group()
def main() -> None:
    """Chaos scenarios against clusters of etcdpy processes."""


@main.command("list")
def list_scenarios() -> None:
    """List the scenarios: size, faults, workloads."""
    for s in SCENARIOS.values():
        click.echo(
            f"{s.name:12} {s.size} members  faults: {', '.join(s.nemeses)}  load: {', '.join(s.workloads)}"
        )


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the first run")
@click.option(
    "--time", "seconds", type=float, default=8.0, show_default=True, help="seconds of faults per run"
)
@click.option(
    "--for", "total", type=float, default=0.0, help="keep running (seeds counting up) for this many seconds"
)
@click.option("--dir", "root", type=click.Path(path_type=Path), default=None, help="where run folders go")
@click.option("--keep", is_flag=True, help="keep the folders of passing runs too")
def run(
    scenarios: tuple[str, ...], seed: int, seconds: float, total: float, root: Path | None, keep: bool
) -> None:
    """Run SCENARIOS (all if none) with a seed; exit 1 if any run finds an anomaly."""
    # Members run in sessions of their own: turn a SIGTERM into an exit so every run's cleanup kills them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    names = list(scenarios) or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise click.UsageError(f"unknown scenarios {unknown}; see `python -m etcdpy.chaos list`")
    root = root or Path(tempfile.gettempdir()) / "etcdpy-chaos"
    end = time.monotonic() + total
    runs = operations = checked = failed = 0
    while True:
        for name in names:
            result = run_scenario(SCENARIOS[name], seed, seconds, root / f"{name}-seed{seed}", keep=keep)
            runs += 1
            operations += result.operations
            checked += result.checked_operations
            failed += not result.passed
            click.echo(result.summary())
        seed += 1
        if time.monotonic() >= end:
            break
    click.echo(
        f"runs: {runs}, operations: {operations}, operations checked: {checked}, failed runs: {failed}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
