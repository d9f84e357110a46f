"""Day-ahead market with flexible demand: dual decomposition and ADMM against cvxpy.

The market of ``tests/market/iterative/test_day_ahead.py`` at a realistic size: ``--generators``
generators with quadratic costs, ``--loads`` EVs sampled by ``EVPopulation.sample`` (evening
arrivals, morning departures) over 24 hourly periods from noon, and a fixed demand with an
evening peak, four times the fleet's average draw.

Printed, per method (dual decomposition with its remedy; ADMM in exchange form): rounds to the
tolerance, time per round, total time, the final relative gap to the centralized optimum and
the largest price error; the centralized cvxpy solve (Clarabel; wall time including cvxpy's
compilation, and Clarabel's own solve time) is the baseline, measured in the same run, and each
method's total time is given as a ratio to it. Then a table at message loss 0 / 10 / 30 %:
rounds to tolerance and final gap.

Run: ``.venv/bin/python benchmarks/bench_day_ahead.py [--loads 10000] [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from transactive.devices.base import Horizon
from transactive.devices.ev import EVPopulation
from transactive.market.iterative import (
    CentralizedOptimum,
    CommsFaults,
    IterativeResult,
    StoppingRule,
    relative_gap,
)
from transactive.market.iterative.admm import admm_exchange
from transactive.market.iterative.day_ahead import DayAheadProblem, centralized_day_ahead
from transactive.market.iterative.dual_decomposition import dual_decomposition
from transactive.weather import WeatherSample

Method = Callable[..., IterativeResult]
METHODS: dict[str, Method] = {
    "dual decomposition": dual_decomposition,
    "ADMM (exchange)": admm_exchange,
}


def market(n_loads: int, n_gen: int, seed: int) -> DayAheadProblem:
    rng = np.random.default_rng(seed)
    pop = EVPopulation.sample(n_loads, rng)
    horizon = Horizon(12 * 3600, 3600, 24)
    flex = pop.flexibility(horizon, [WeatherSample(temperature_c=15.0)] * 24)
    hours = (12 + np.arange(24)) % 24
    shape = (
        0.55
        + 0.2 * np.cos((hours - 14) / 24 * 2 * np.pi)
        + 0.3 * np.exp(-0.5 * ((hours - 19) / 2.0) ** 2)
    )
    demand = 4.0 * pop.energy_needed_kwh.sum() / 0.9 / 24 * shape
    peak = demand.max() + 0.3 * flex.power_max_kw.sum(axis=1).max()
    caps = np.linspace(1.0, 2.0, n_gen)
    caps = caps / caps.sum() * 1.3 * peak
    return DayAheadProblem.from_flexibility(
        flex,
        inflexible_demand_kw=demand,
        cost_linear_per_kwh=np.linspace(0.03, 0.12, n_gen),
        cost_quadratic_per_kwh_per_kw=0.15 / caps * np.linspace(1.0, 2.0, n_gen),
        power_min_kw=0.1 * caps,
        power_max_kw=caps,
    )


def run(
    method: Method, problem: DayAheadProblem, rule: StoppingRule, loss: float, seed: int
) -> tuple[IterativeResult, float]:
    t0 = time.perf_counter()
    res = method(problem, rule=rule, faults=CommsFaults(loss_probability=loss, seed=seed))
    return res, time.perf_counter() - t0


def fmt_rounds(res: IterativeResult, tol: float) -> str:
    k = res.rounds_to(tol)
    return f"{k}" if k is not None else f"> {res.n_rounds} (not reached)"


def price_error(res: IterativeResult, opt: CentralizedOptimum) -> float:
    assert opt.prices is not None
    return float(np.abs(res.prices - opt.prices).max() / opt.prices.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5000, help="flexible loads (EVs)")
    parser.add_argument("--generators", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="on the relative residuals")
    parser.add_argument("--max-rounds", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 loads")
    args = parser.parse_args()
    n_loads = 1000 if args.quick else args.loads
    rule = StoppingRule(tolerance=args.tolerance, max_rounds=args.max_rounds)

    t0 = time.perf_counter()
    problem = market(n_loads, args.generators, args.seed)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    opt = centralized_day_ahead(problem)
    t_central = time.perf_counter() - t0
    print(
        f"day-ahead market: {problem.n_generators} generators, {problem.n_flexible} flexible "
        f"loads, {problem.n_periods} periods of {problem.period_h:g} h "
        f"(problem built in {t_build:.2f} s)"
    )
    print(
        f"centralized cvxpy/Clarabel (baseline): {t_central:.2f} s wall "
        f"(Clarabel's solve {opt.solve_time_s:.2f} s), optimum {opt.objective:.6g}"
    )
    print(
        f"tolerance {args.tolerance:g} on both relative residuals, "
        f"at most {args.max_rounds} rounds\n"
    )

    header = (
        f"{'method':<20} {'rounds to tol':>16} {'ms/round':>9} {'total s':>8} "
        f"{'x central':>9} {'final gap':>10} {'price err':>10}"
    )
    print(header)
    print("-" * len(header))
    clean: dict[str, IterativeResult] = {}
    for name, method in METHODS.items():
        res, dt = run(method, problem, rule, 0.0, args.seed)
        clean[name] = res
        print(
            f"{name:<20} {fmt_rounds(res, args.tolerance):>16} {1e3 * dt / res.n_rounds:>9.2f} "
            f"{dt:>8.2f} {dt / t_central:>9.2f} {relative_gap(res.objective[-1], opt):>10.2e} "
            f"{price_error(res, opt):>10.2e}"
        )
    print("\n(final gap: cost of serving the loads' last schedules at least cost, relative to the")
    print(" optimum; price err: largest price difference over the highest clearing price)\n")

    header = f"{'method':<20} {'loss':>5} {'rounds to tol':>22} {'final gap':>10} {'price err':>10}"
    print(header)
    print("-" * len(header))
    for name, method in METHODS.items():
        for loss in (0.0, 0.1, 0.3):
            res = clean[name] if loss == 0.0 else run(method, problem, rule, loss, args.seed)[0]
            print(
                f"{name:<20} {loss:>5.0%} {fmt_rounds(res, args.tolerance):>22} "
                f"{relative_gap(res.objective[-1], opt):>10.2e} {price_error(res, opt):>10.2e}"
            )


if __name__ == "__main__":
    main()
