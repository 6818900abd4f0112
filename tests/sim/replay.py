"""Replay one simulation seed with its whole event trace.

Usage: python -m tests.sim.replay SEED [--steps N] [--messages] [--app toy|server]

Prints the run's plan, every event (crashes, partitions, elections,
membership changes; with --messages every delivered message) and the result.
Exits 1 if the seed breaks a guarantee.
"""

from __future__ import annotations

import argparse
import sys

from .plan import APPS
from .runner import SimulationFailure, run_seed


def main(argv: list[str] | None = None) -> int:
    """Main replays the seed named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.sim.replay", description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=int)
    parser.add_argument("--steps", type=int, default=None, help="steps with faults (default: the plan's)")
    parser.add_argument("--messages", action="store_true", help="trace every delivered message")
    parser.add_argument(
        "--app",
        choices=APPS,
        default="toy",
        help="what nodes apply entries to: the toy store or the server's",
    )
    args = parser.parse_args(argv)
    trace: list[str] = []
    try:
        result = run_seed(
            args.seed, args.steps, trace_limit=None, trace_messages=args.messages, trace=trace, app=args.app
        )
    except SimulationFailure as failure:
        print("\n".join(failure.trace))
        print(f"\nFAILED seed {failure.seed}: {failure.reason}")
        return 1
    print("\n".join(trace))
    print(
        f"\nok: seed {result.seed}, {result.steps} steps, {result.operations} operations "
        f"({result.unknown_outcomes} of unknown outcome)"
    )
    print(f"plan: {result.plan}")
    print("stats: " + ", ".join(f"{k}={v}" for k, v in sorted(result.stats.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
