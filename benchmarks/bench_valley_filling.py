"""EV valley filling: Gan, Topcu & Low's decentralized protocol against the centralized solve.

The fleet is ``EVPopulation.sample`` (evening arrivals, morning departures, 3.7/7.4/11 kW
chargers) over a day of 15-minute periods from 12:00, read through ``EVPopulation.flexibility``;
the base load is one household per EV on SimBench's household profiles (the mean of H0-A ... H0-L,
a winter weekday, 3,500 kWh a year per household). Printed: EVs, periods, rounds to the stopping
rule's tolerance (1e-4, the default), time per round, total time, final relative gap against the
centralized optimum (cvxpy + Clarabel, timed in the same run), the round at which the gap first
fell below 1e-4, and the ratio centralized time / ours. Then, at a smaller size, the rounds and
the final gap with 0 %, 10 % and 30 % message loss, with price delays of 2 rounds (the
asynchronous step size), and Ma, Callaway & Hiskens' game on the same fleet.

    python benchmarks/bench_valley_filling.py                      # 10,000 EVs, 96 periods
    python benchmarks/bench_valley_filling.py --evs 2000 --small-evs 500
    python benchmarks/bench_valley_filling.py --skip-centralized   # only our side of the ratio
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from transactive.data import load_simbench_profiles
from transactive.devices.base import Horizon
from transactive.devices.ev import EVPopulation
from transactive.market.iterative import CommsFaults, EvFleet, StoppingRule, relative_gap
from transactive.market.iterative.valley_filling import (
    centralized_valley_filling,
    gan_valley_filling,
    ma_callaway_hiskens,
)
from transactive.weather import WeatherSample

DAY = 20  # 21 January 2016, a Thursday
HOUSEHOLD_KWH_PER_YEAR = 3500.0
START_H = 12


def problem(n_evs: int, n_periods: int, seed: int) -> tuple[EvFleet, np.ndarray]:
    period_s = 86400 // n_periods
    pop = EVPopulation.sample(n_evs, np.random.default_rng(seed))
    horizon = Horizon(start_s=START_H * 3600, period_s=period_s, n_periods=n_periods)
    fleet = EvFleet.from_flexibility(pop.flexibility(horizon, [WeatherSample(3.0)] * n_periods))
    profiles = load_simbench_profiles(step_s=period_s)
    per_day = 86400 // period_s
    first = DAY * per_day + START_H * 3600 // period_s
    shape_pu = profiles.values_pu[:, first : first + n_periods].mean(axis=0)
    kw_per_pu = HOUSEHOLD_KWH_PER_YEAR / float(profiles.full_load_hours.mean())
    return fleet, shape_pu * kw_per_pu * n_evs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evs", type=int, default=10_000)
    parser.add_argument("--periods", type=int, default=96)
    parser.add_argument("--small-evs", type=int, default=1000, help="fleet of the fault table")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-centralized", action="store_true")
    args = parser.parse_args()

    fleet, base = problem(args.evs, args.periods, args.seed)
    print(
        f"EVs {fleet.n_evs}, periods {fleet.n_periods}; base load mean {base.mean():.0f} kW, "
        f"peak {base.max():.0f} kW; EV energy {fleet.energy_kwh.sum():.0f} kWh"
    )
    t0 = time.perf_counter()
    result = gan_valley_filling(fleet, base)
    ours_s = time.perf_counter() - t0
    print(
        f"Gan et al.: rounds {result.n_rounds} ({result.stop_reason}), "
        f"time per round {1e3 * ours_s / result.n_rounds:.1f} ms, total {ours_s:.2f} s"
    )
    if not args.skip_centralized:
        t0 = time.perf_counter()
        optimum = centralized_valley_filling(fleet, base)
        central_s = time.perf_counter() - t0
        gaps = (result.objective - optimum.objective) / abs(optimum.objective)
        within = np.flatnonzero(gaps < 1e-4)
        first = f"round {within[0] + 1}" if within.size else "never"
        print(f"final relative gap {relative_gap(result.objective[-1], optimum):.2e}")
        print(f"gap below 1e-4 from {first}")
        print(
            f"centralized (cvxpy + {optimum.solver}): {central_s:.2f} s "
            f"(solver {optimum.solve_time_s:.2f} s)"
        )
        print(f"ratio centralized time / ours: {central_s / ours_s:.1f}")

    small, small_base = problem(args.small_evs, args.periods, args.seed + 1)
    small_opt = centralized_valley_filling(small, small_base)
    print(f"\nfaults, {small.n_evs} EVs (tolerance 1e-4):")
    print(f"{'algorithm':<22}{'loss':>6}{'delay':>6}{'rounds':>8}{'converged':>11}{'gap':>11}")
    cases = [(0.0, 0), (0.1, 0), (0.3, 0), (0.0, 2)]
    rule = StoppingRule(max_rounds=20_000)
    for loss, delay in cases:
        faults = CommsFaults(loss_probability=loss, max_delay_rounds=delay, seed=args.seed)
        run = gan_valley_filling(small, small_base, rule=rule, faults=faults)
        gap = relative_gap(run.objective[-1], small_opt)
        print(
            f"{'Gan et al.':<22}{loss:>6.0%}{delay:>6}{run.n_rounds:>8}{run.converged!s:>11}"
            f"{gap:>11.2e}"
        )
    slope = 1e-3 / small.n_evs  # currency/kWh per kW: only the tracking weight's ratio matters
    for loss, delay in cases:
        faults = CommsFaults(loss_probability=loss, max_delay_rounds=delay, seed=args.seed)
        run = ma_callaway_hiskens(small, small_base, price_slope=slope, rule=rule, faults=faults)
        gap = relative_gap(run.objective[-1], small_opt)
        print(
            f"{'Ma-Callaway-Hiskens':<22}{loss:>6.0%}{delay:>6}{run.n_rounds:>8}"
            f"{run.converged!s:>11}{gap:>11.2e}"
        )


if __name__ == "__main__":
    main()
