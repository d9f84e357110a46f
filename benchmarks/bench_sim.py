"""The simulator's speed: ``default`` (1,000 homes, 24 h, both runs) and where the time goes.

Runs a built-in scenario (``default`` unless named) with ``transactive.sim.simulate`` and prints
the wall time, homes x intervals per second (both runs counted), and the time of every stage of
the loop per run: bidding, clearing with the DSO's check (each round one AC power flow),
responding, the physics steps, and the metering AC power flow. The ratio printed is the whole
run against the issue's target of 20 s for ``default``.

    python benchmarks/bench_sim.py [SCENARIO] [--hours H]
"""

from __future__ import annotations

import argparse
import time

from transactive.sim import load_scenario, parse_scenario, simulate

TARGET_S = 20.0


def main() -> None:
    """Run the scenario and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="default")
    parser.add_argument("--hours", type=float, default=None, help="shorten the horizon")
    args = parser.parse_args()
    scenario, base_dir = load_scenario(args.scenario)
    if args.hours is not None:
        scenario = parse_scenario(
            scenario.model_copy(update={"horizon_h": args.hours}).to_toml(), source="bench"
        )
    t0 = time.perf_counter()
    sim = simulate(scenario, base_dir=base_dir)
    wall = time.perf_counter() - t0
    homes_intervals = 2 * scenario.n_homes * scenario.n_intervals
    print(
        f"{scenario.name}: {scenario.n_homes} homes x {scenario.n_intervals} intervals, both runs: "
        f"{wall:.1f} s ({homes_intervals / wall:,.0f} home-intervals/s); "
        f"target {TARGET_S:g} s, ratio {wall / TARGET_S:.2f}"
    )
    for name, run in sim.runs.items():
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in run.timings_s.items())
        print(f"  {name}: {stages}")


if __name__ == "__main__":
    main()
