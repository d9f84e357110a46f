"""Daily HVAC energy of the project's houses against GridLAB-D 6.0.0's on the same houses.

Runs the ``gridlabd`` wheel on N heterogeneous cooling houses (GridLAB-D ``house`` parameters,
``tests/peers/gridlabd.py``) for a July day in Greensboro, NC (pvlib's TMY3 ``723170TYA.CSV``, day
190) with the weather at a 60 s step, runs ``HvacPopulation.from_gridlabd`` on the same
parameters and weather (the day's 1,440 steps in one ``step_many`` call, the fused kernels),
and prints each house's daily energy in both and the difference, and the totals.

    python benchmarks/compare_gridlabd_hvac.py            # 100 houses
    python benchmarks/compare_gridlabd_hvac.py --houses 30 --seed 11
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.peers

from tests.peers.gridlabd import random_houses, run_houses
from transactive.data import load_tmy3
from transactive.devices.hvac import HvacPopulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--houses", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--day", type=int, default=190, help="day of the year (190 = 9 July)")
    args = parser.parse_args()
    weather = load_tmy3("723170TYA.CSV", step_s=60, start_day=args.day, days=1)
    houses = random_houses(args.houses, np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        gld = run_houses(houses, weather, Path(tmp))
    HvacPopulation.from_gridlabd(houses).step_many(0, weather.step_s, weather)  # compile/load
    start = time.perf_counter()
    ours = HvacPopulation.from_gridlabd(houses).step_many(0, weather.step_s, weather).energy_kwh
    ours_s = time.perf_counter() - start
    theirs = gld.hvac_energy_kwh
    diff = ours / theirs - 1.0
    print(f"{args.houses} houses, {weather.station}, day {args.day}, 60 s weather step")
    print(f"{'house':>6} {'GridLAB-D kWh':>14} {'ours kWh':>10} {'diff %':>8}")
    for i in range(args.houses):
        print(f"{i:>6} {theirs[i]:>14.3f} {ours[i]:>10.3f} {100 * diff[i]:>+8.2f}")
    total = ours.sum() / theirs.sum() - 1.0
    print(
        f"total: GridLAB-D {theirs.sum():.2f} kWh, ours {ours.sum():.2f} kWh, {100 * total:+.2f} %"
    )
    print(
        f"per house: mean |diff| {100 * np.abs(diff).mean():.2f} %, "
        f"max |diff| {100 * np.abs(diff).max():.2f} % (house {int(np.abs(diff).argmax())})"
    )
    print(f"wall time: GridLAB-D {gld.wall_seconds:.2f} s (with recorders), ours {ours_s:.2f} s")


if __name__ == "__main__":
    main()
