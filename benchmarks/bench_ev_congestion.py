"""Network-constrained transactive EV charging (Hu, Yang, Bindner & Xue 2017) on case33bw.

Target (issue): 1,000 EVs over 24 hourly periods in under 60 s. Fleet operators plan against
day-ahead energy prices; the DSO answers with congestion prices until the transformer limit and
the voltage floor hold in AC (``transactive.coordination.ev_congestion``).

Printed: rounds, time per round and in total, the centralized cvxpy solve of the same problem
(the DSO's SOCP OPF with every EV, Clarabel) timed in the same run and the ratio of the two, the
cost gap, and the largest transformer loading and lowest voltage of the final plan in the DSO's
model (power-grid-model, the flows it iterates on) and in pandapower's AC power flow
(``run_day``); then a table of message loss 0 / 10 / 30 % at a smaller size (the test case).

Run: ``.venv/bin/python benchmarks/bench_ev_congestion.py [--evs 1000] [--table-evs 120]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from transactive.coordination.ev_congestion import (
    NetworkEvProblem,
    centralized_network_ev,
    network_constrained_ev_charging,
)
from transactive.market.iterative import CommsFaults, EvFleet, StoppingRule, relative_gap
from transactive.network import (
    BatchPowerFlow,
    Feeder,
    feeder_day_load,
    load_feeder,
    run_day,
    spread_over_load_buses,
)

END_NODES = np.array([15, 16, 17, 29, 30, 31, 32])


@dataclass(frozen=True)
class Preset:
    """A case: base load scale, limits, the EVs' rates and needs, the share at the feeder ends."""

    load_scale: float
    limit_kva: float
    vmin_pu: float
    rates_kw: tuple[float, ...]
    need_kwh: tuple[float, float]
    end_share: float


#: 1,000 EVs: commuters' needs, 3.7-11 kW chargers, the feeder at half its nominal load.
LARGE = Preset(0.5, 2400.0, 0.95, (3.7, 7.4, 11.0), (4.0, 16.0), 0.1)
#: The test case (tests/coordination/test_ev_congestion.py): 120 EVs, 30 % load.
SMALL = Preset(0.3, 1350.0, 0.972, (7.4, 11.0), (10.0, 35.0), 0.4)


def make_problem(
    feeder: Feeder, n_ev: int, n_fo: int, preset: Preset, seed: int
) -> NetworkEvProblem:
    day = feeder_day_load(feeder, scale=preset.load_scale)
    base_p = np.roll(day.p_kw.reshape(24, 4, -1).mean(axis=1), -12, axis=0)  # 12:00 to 12:00
    base_q = np.roll(day.q_kvar.reshape(24, 4, -1).mean(axis=1), -12, axis=0)
    hours = (np.arange(24) + 12) % 24
    price = (
        0.20
        + 0.08 * np.cos(2 * np.pi * (hours - 19) / 24)
        + 0.03 * np.cos(4 * np.pi * (hours - 8) / 24)
    )
    rng = np.random.default_rng(seed)
    bus = spread_over_load_buses(n_ev, feeder, rng)
    at_end = rng.random(n_ev) < preset.end_share
    bus[at_end] = rng.choice(END_NODES, int(at_end.sum()))
    arrive = rng.integers(5, 9, n_ev)  # 17:00-20:00
    leave = rng.integers(18, 21, n_ev)  # 06:00-08:00
    rate = rng.choice(np.asarray(preset.rates_kw), n_ev)
    t = np.arange(24)[:, None]
    rate_max = np.where((t >= arrive) & (t < leave), rate, 0.0)
    lo, hi = preset.need_kwh
    need = np.minimum(rng.uniform(lo, hi, n_ev), 0.8 * rate_max.sum(axis=0))
    owner = rng.integers(0, n_fo, n_ev)
    fleets = tuple(
        EvFleet(
            np.array([f"fo{k}-ev{i}" for i in np.flatnonzero(owner == k)]),
            rate_max[:, owner == k],
            need[owner == k],
            1.0,
        )
        for k in range(n_fo)
    )
    return NetworkEvProblem(
        feeder,
        fleets,
        tuple(bus[owner == k] for k in range(n_fo)),
        base_p,
        base_q,
        price,
        preset.limit_kva,
        vmin_pu=preset.vmin_pu,
    )


def ac_figures(problem: NetworkEvProblem, schedules_kw: np.ndarray) -> tuple[float, float]:
    """pandapower's AC power flow of a plan: largest transformer loading (%), lowest voltage."""
    ev = np.zeros((problem.n_periods, problem.feeder.n_nodes))
    np.add.at(ev.T, problem.ev_bus, schedules_kw.T)
    day = run_day(problem.feeder, problem.base_p_kw + ev, problem.base_q_kvar, interval_s=3600)
    assert day.converged.all()
    s0 = np.hypot(day.p_slack_kw, day.q_slack_kvar)
    return float(100.0 * s0.max() / problem.transformer_kva), float(day.vmin_pu.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evs", type=int, default=1000, help="EVs of the main run")
    parser.add_argument("--fleets", type=int, default=5, help="fleet operators")
    parser.add_argument("--table-evs", type=int, default=120, help="EVs of the loss table")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--max-rounds", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rule = StoppingRule(tolerance=args.tolerance, max_rounds=args.max_rounds, min_rounds=2)

    feeder = load_feeder("case33bw")
    flow = BatchPowerFlow(feeder)
    problem = make_problem(feeder, args.evs, args.fleets, LARGE, args.seed)
    print(
        f"case33bw, {problem.n_evs} EVs of {problem.n_fleets} fleet operators, "
        f"{problem.n_periods} hourly periods; transformer {problem.transformer_kva:g} kVA, "
        f"vmin {LARGE.vmin_pu} pu; tolerance {args.tolerance:g}"
    )

    t0 = time.perf_counter()
    result = network_constrained_ev_charging(problem, rule=rule, flow=flow)
    t_iter = time.perf_counter() - t0
    t0 = time.perf_counter()
    central = centralized_network_ev(problem)
    t_central = time.perf_counter() - t0
    gap = relative_gap(float(result.objective[-1]), central)
    extra = result.extra
    tr_ac, vmin_ac = ac_figures(problem, result.schedules_kw)
    tr_c, vmin_c = ac_figures(problem, central.schedules_kw)

    print("\nnetwork-constrained transactive control (iterative)")
    print(
        f"  rounds {result.n_rounds} ({result.stop_reason}), "
        f"{1e3 * t_iter / result.n_rounds:.2f} ms per round, total {t_iter:.2f} s "
        f"(target < 60 s: {'met' if t_iter < 60 else 'NOT met'})"
    )
    print(
        f"  uncongested plan: transformer "
        f"{extra['uncongested_transformer_loading_pct'].max():.1f} %, "
        f"vmin {extra['uncongested_vmin_pu'].min():.4f} pu"
    )
    print(
        f"  final plan, DSO model (power-grid-model): transformer "
        f"{extra['transformer_loading_pct'].max():.3f} %, vmin {extra['vmin_pu'].min():.5f} pu"
    )
    print(f"  final plan, AC check (pandapower): transformer {tr_ac:.3f} %, vmin {vmin_ac:.5f} pu")
    print("\ncentralized (DSO's SOCP OPF with every EV, cvxpy + Clarabel)")
    print(
        f"  wall {t_central:.2f} s (solver {central.solve_time_s:.2f} s); its plan in AC: "
        f"transformer {tr_c:.3f} %, vmin {vmin_c:.5f} pu"
    )
    print(
        f"\ncost: iterative {result.objective[-1]:.4f}, centralized {central.objective:.4f}, "
        f"gap {gap:.2e}; iterative / centralized time {t_iter / t_central:.2f}"
    )

    small = make_problem(feeder, args.table_evs, 3, SMALL, args.seed)
    t0 = time.perf_counter()
    small_central = centralized_network_ev(small)
    t_small_central = time.perf_counter() - t0
    print(
        f"\nmessage loss, {small.n_evs} EVs of {small.n_fleets} FOs (the test case; centralized "
        f"{t_small_central:.2f} s)"
    )
    print("  loss  rounds  converged  time s  ms/round   gap       transformer %  vmin pu")
    for loss in (0.0, 0.1, 0.3):
        t0 = time.perf_counter()
        run = network_constrained_ev_charging(
            small, rule=rule, faults=CommsFaults(loss_probability=loss, seed=7), flow=flow
        )
        elapsed = time.perf_counter() - t0
        tr, vmin = ac_figures(small, run.schedules_kw)
        print(
            f"  {loss:4.0%}  {run.n_rounds:6d}  {run.converged!s:9}  {elapsed:6.2f}  "
            f"{1e3 * elapsed / run.n_rounds:8.2f}  "
            f"{relative_gap(float(run.objective[-1]), small_central):9.2e}  "
            f"{tr:13.3f}  {vmin:.5f}"
        )


if __name__ == "__main__":
    main()
