"""AC power flow of a day: pandapower ``runpp`` per interval against one power-grid-model batch.

Cases: 288 five-minute intervals on ``case33bw`` (its nominal load times SimBench's mean
household shape, upsampled, with ±10 % noise per node and interval) and on SimBench
``1-MV-urban--0-sw`` (its own profiles of the year's peak day, upsampled likewise). For each:

* pandapower: :class:`~transactive.network.powerflow.PowerFlowRunner` (one prepared net,
  Newton-Raphson per interval), the baseline;
* power-grid-model: :class:`~transactive.network.pgm.BatchPowerFlow`, its one-time conversion,
  the batch of all intervals (sequential, and with one thread per core), and the single-interval
  call ``run_interval`` (the simulator's per-interval check: one single calculation on a model
  updated in place) against a batch of one interval (what ``run_interval`` ran before; the same
  numbers bit for bit), both over every interval of the day;
* ``run_day`` end to end on both backends (power flow plus the DSO's violation rules);
* the largest voltage difference (pu) and loss difference (%) between the two.

Printed: seconds and the ratio pandapower / power-grid-model, measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_powerflow.py [--intervals 288] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from transactive.network import (
    BatchPowerFlow,
    PowerFlowRunner,
    feeder_day_load,
    load_feeder,
    run_day,
)
from transactive.network.feeders import Feeder


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _day(feeder: Feeder, intervals: int, rng: np.random.Generator) -> tuple[Any, Any]:
    load = feeder_day_load(feeder)  # 96 quarter-hours
    index = np.arange(intervals) * 96 // intervals
    noise = rng.uniform(0.9, 1.1, (intervals, feeder.n_nodes))
    return load.p_kw[index] * noise, load.q_kvar[index] * noise


def bench(name: str, intervals: int, repeats: int) -> None:
    """Time one feeder's day both ways and print the figures."""
    feeder = load_feeder(name)
    p, q = _day(feeder, intervals, np.random.default_rng(0))
    runner = PowerFlowRunner(feeder, replace_injections=True)

    def pandapower_day() -> list[Any]:
        return [runner.run(p[t], q[t]) for t in range(intervals)]

    t_pp, ref = _best(pandapower_day, 1)
    t_build, flow = _best(lambda: BatchPowerFlow(feeder), repeats)
    t_batch, batch = _best(lambda: flow.run(p, q), repeats)
    threaded = BatchPowerFlow(feeder, threading=0)
    t_thread, _ = _best(lambda: threaded.run(p, q), repeats)
    t_one, _ = _best(lambda: flow.run_interval(p[0], q[0]), max(repeats, 20))
    t_single_day, _ = _best(
        lambda: [flow.run_interval(p[t], q[t]) for t in range(intervals)], repeats
    )
    t_batch1_day, _ = _best(
        lambda: [flow.run(p[t : t + 1], q[t : t + 1]) for t in range(intervals)], repeats
    )
    t_pp_one = t_pp / intervals
    t_day_pp, _ = _best(lambda: run_day(feeder, p, q, interval_s=300), 1)
    t_day_pgm, _ = _best(
        lambda: run_day(feeder, p, q, interval_s=300, flow=flow, backend="pgm"), repeats
    )

    vm_ref = np.stack([r.vm_pu for r in ref])
    loss_ref = np.asarray([r.losses_kw for r in ref])
    dv = float(np.max(np.abs(vm_ref - batch.vm_pu)))
    dloss = float(np.max(np.abs(loss_ref - batch.losses_kw) / loss_ref)) * 100.0

    print(f"\n{name}: {feeder.n_nodes} nodes, {feeder.n_branches} branches, {intervals} intervals")
    print(f"  pandapower runpp per interval   {t_pp:9.3f} s  ({t_pp_one * 1e3:.1f} ms each)")
    print(f"  pgm conversion (once)           {t_build:9.4f} s")
    print(f"  pgm batch, sequential           {t_batch:9.4f} s  ratio {t_pp / t_batch:7.0f}x")
    print(f"  pgm batch, threads = cores      {t_thread:9.4f} s  ratio {t_pp / t_thread:7.0f}x")
    print(f"  pgm run_interval (one)          {t_one * 1e3:9.3f} ms ratio {t_pp_one / t_one:7.0f}x")
    print(
        f"  pgm run_interval, every interval {t_single_day:8.4f} s  against a batch of one per "
        f"interval {t_batch1_day:.4f} s: ratio {t_batch1_day / t_single_day:.2f}x"
    )
    print(f"  run_day pandapower              {t_day_pp:9.3f} s")
    print(
        f"  run_day pgm (prepared flow)     {t_day_pgm:9.4f} s  ratio {t_day_pp / t_day_pgm:7.0f}x"
    )
    print(
        f"  max |dV| {dv:.2e} pu, max loss difference {dloss:.2e} %,"
        f" all converged: {bool(batch.converged.all())}"
    )


def main() -> None:
    """Run the benchmark on case33bw and SimBench 1-MV-urban--0-sw."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=288)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in ("case33bw", "1-MV-urban--0-sw"):
        bench(name, args.intervals, args.repeats)


if __name__ == "__main__":
    main()
