"""Incremental cost consensus (Zhang & Chow 2012): rounds, speed and gap per topology and size.

For each topology (ring, line, complete, random connected) and size, a random dispatch problem
(quadratic costs, limits, demand inside the range; the same units on every topology of a size)
is solved by `incremental_cost_consensus` at its default epsilon and by `centralized_dispatch`
(one cvxpy problem, Clarabel), the baseline measured in the same run. Printed per case:

- rounds to the tolerance (or ``>max`` when the round limit cut the run), and the rounds the
  local linear rate predicts, ``log(tol) / log(rho)`` with ``rho`` the spectral radius of
  ``D - epsilon e_leader s_A^T`` over the units responsive at the optimum (dense eigenvalues, so
  only for sizes up to ``--predict-max``);
- the time of the bound's setup (one symmetric eigendecomposition of the graph and the root
  search), time per round, total consensus time;
- the gap to the cvxpy optimum (cost) and the price error, and the cvxpy times (wall-clock with
  cvxpy's compilation, and Clarabel's own solve time), with the ratio consensus / cvxpy wall.

Then a table at message loss 0 / 10 / 30 % (and a delay column) at one size.

    python benchmarks/bench_consensus.py [--sizes 10 100 1000] [--loss-size 100] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from transactive.market.iterative import CommsFaults, StoppingRule, relative_gap
from transactive.market.iterative.consensus import (
    CommunicationGraph,
    DispatchProblem,
    centralized_dispatch,
    epsilon_bound,
    incremental_cost_consensus,
)


def random_graph(n: int, seed: int) -> CommunicationGraph:
    """A random tree plus pairs with probability 2 ln(n) / n (about 2 ln n neighbours each)."""
    p = min(1.0, 2.0 * math.log(max(n, 2)) / n)
    return CommunicationGraph.random_connected(n, p, seed)


TOPOLOGIES: dict[str, Callable[[int, int], CommunicationGraph]] = {
    "ring": lambda n, seed: CommunicationGraph.ring(max(n, 3)),
    "line": lambda n, seed: CommunicationGraph.line(n),
    "complete": lambda n, seed: CommunicationGraph.complete(n),
    "random": random_graph,
}


def units(n: int, seed: int) -> dict[str, np.ndarray | float]:
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.0, 50.0, n)
    high = low + rng.uniform(10.0, 100.0, n)
    return {
        "cost_constant_per_h": rng.uniform(0.0, 5.0, n),
        "cost_linear_per_kwh": rng.uniform(0.05, 0.15, n),
        "cost_quadratic_per_kwh_per_kw": rng.uniform(2e-4, 2e-3, n),
        "output_min_kw": low,
        "output_max_kw": high,
        "demand_kw": float(low.sum() + 0.6 * (high - low).sum()),
    }


def problem_on(graph: CommunicationGraph, data: dict[str, np.ndarray | float]) -> DispatchProblem:
    return DispatchProblem(
        cost_constant_per_h=np.asarray(data["cost_constant_per_h"]),
        cost_linear_per_kwh=np.asarray(data["cost_linear_per_kwh"]),
        cost_quadratic_per_kwh_per_kw=np.asarray(data["cost_quadratic_per_kwh_per_kw"]),
        output_min_kw=np.asarray(data["output_min_kw"]),
        output_max_kw=np.asarray(data["output_max_kw"]),
        demand_kw=float(data["demand_kw"]),
        graph=graph,
        leader=0,
    )


def predicted_rounds(problem: DispatchProblem, eps: float, tol: float, price: float) -> float:
    out = problem.output_at(np.full(problem.n_units, price))
    free = (out > problem.output_min_kw + 1e-6) & (out < problem.output_max_kw - 1e-6)
    m = problem.graph.update_matrix().toarray()
    m[problem.leader] -= eps * np.where(free, problem.slope_kw_per_price, 0.0)
    rho = float(np.abs(np.linalg.eigvals(m)).max())
    return math.log(tol) / math.log(rho) if rho < 1 else math.inf


def fmt_rounds(result_converged: bool, rounds: int) -> str:
    return f"{rounds:>8d}" if result_converged else f"{'>' + str(rounds):>8s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--max-rounds", type=int, default=20_000)
    parser.add_argument("--predict-max", type=int, default=1000, help="largest n for eig")
    parser.add_argument("--loss-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="sizes 10 and 100 only")
    args = parser.parse_args()
    sizes = [s for s in args.sizes if s <= 100] if args.quick else args.sizes
    rule = StoppingRule(tolerance=args.tolerance, max_rounds=args.max_rounds)

    print(f"ICC to tolerance {args.tolerance:g} (relative mismatch and lambda spread), default eps")
    head = (
        f"{'topology':>9s} {'n':>5s} {'edges':>7s} {'rounds':>8s} {'predict':>8s} "
        f"{'setup s':>8s} {'us/round':>9s} {'ICC s':>8s} {'gap':>9s} {'price err':>9s} "
        f"{'cvxpy s':>8s} {'clarabel':>8s} {'ICC/cvxpy':>9s}"
    )
    print(head)
    for n in sizes:
        data = units(n, args.seed + n)
        for name, make in TOPOLOGIES.items():
            graph = make(n, args.seed + n)
            problem = problem_on(graph, data)
            t0 = time.perf_counter()
            epsilon_bound(problem)  # the graph's eigendecomposition, cached on the graph
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = incremental_cost_consensus(problem, rule=rule)
            icc = time.perf_counter() - t0
            t0 = time.perf_counter()
            opt = centralized_dispatch(problem)
            wall = time.perf_counter() - t0
            assert opt.prices is not None
            gap = relative_gap(result.objective[-1], opt)
            price_err = abs(result.prices[0] / opt.prices[0] - 1.0)
            eps = float(result.extra["epsilon"][0])
            predict = (
                predicted_rounds(problem, eps, args.tolerance, float(opt.prices[0]))
                if n <= args.predict_max
                else math.nan
            )
            print(
                f"{name:>9s} {n:>5d} {graph.n_edges:>7d} "
                f"{fmt_rounds(result.converged, result.n_rounds)} {predict:>8.0f} "
                f"{setup:>8.3f} {1e6 * icc / result.n_rounds:>9.1f} {icc:>8.3f} "
                f"{gap:>9.1e} {price_err:>9.1e} {wall:>8.3f} {opt.solve_time_s:>8.4f} "
                f"{icc / wall:>9.1f}"
            )

    n = args.loss_size
    data = units(n, args.seed + n)
    print(f"\nMessage loss and delay at n = {n} (seed 1; rounds, and the ratio to no loss)")
    cases = [
        ("loss 0 %", CommsFaults()),
        ("loss 10 %", CommsFaults(loss_probability=0.1, seed=1)),
        ("loss 30 %", CommsFaults(loss_probability=0.3, seed=1)),
        ("delay <=3", CommsFaults(max_delay_rounds=3, seed=1)),
    ]
    print(f"{'topology':>9s} " + " ".join(f"{label:>22s}" for label, _ in cases))
    for name, make in TOPOLOGIES.items():
        problem = problem_on(make(n, args.seed + n), data)
        opt = centralized_dispatch(problem)
        cells = []
        base = None
        for _, faults in cases:
            result = incremental_cost_consensus(problem, rule=rule, faults=faults)
            base = base if base is not None else result.n_rounds
            gap = relative_gap(result.objective[-1], opt)
            rounds = fmt_rounds(result.converged, result.n_rounds).strip()
            cells.append(f"{rounds:>7s} x{result.n_rounds / base:4.2f} {gap:8.1e}")
        print(f"{name:>9s} " + " ".join(f"{c:>22s}" for c in cells))
    print("(each cell: rounds, ratio to loss 0 %, gap to cvxpy)")


if __name__ == "__main__":
    main()
