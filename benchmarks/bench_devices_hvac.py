"""Thermostatic device populations against GridLAB-D 6.0.0, and one 5-minute market interval.

Prints, in one run (issue 17, devices):

1. vectorized device-steps per second for each thermostatic kind (HVAC with the fused numba
   kernels and with the numpy reference, with their ratio; water heater; heat pump);
2. one 5-minute market interval (bid + respond + five 1-minute physics steps) of the HVAC
   population, each phase timed, with the five steps as five ``step`` calls (what the simulator
   does today) and as one ``step_many`` call, against the numpy reference on the same houses
   (target: under 0.2 s for 1,000,000 houses);
3. house-hours simulated per second by GridLAB-D 6.0.0 (the ``gridlabd`` wheel) and by
   ``HvacPopulation`` on the same houses (GridLAB-D ``house`` parameters, converted by
   ``HvacPopulation.from_gridlabd``), the same day (Greensboro, NC, 9 July, pvlib's TMY3) and the
   same 60 s step (GridLAB-D's ``minimum_timestep=60``), with the ratio (target: 100x).
   GridLAB-D runs without recorders (its fastest configuration); its time is load + init + run
   of the GLM through the wheel's API (each stage printed too), ours the population's
   construction and the day's 1,440 steps in one ``step_many`` call (the houses split over the
   cores). GridLAB-D 6.0.0's load grows faster than the square of the objects, so more than
   ``--gridlabd-model-max`` houses (10,000) run as several models one after the other, as a
   user would run them (the houses do not interact).

The kernels, both their one-core and their parallel builds, are compiled (or loaded from
numba's cache) before anything is timed, on a small population; the time that takes is printed
first. Every figure is the best of a few repeats (the machine may be shared), and every ratio is
between figures measured in this run.

    python benchmarks/bench_devices_hvac.py                  # 1e6 houses; GridLAB-D 1,000, 10,000
    python benchmarks/bench_devices_hvac.py --gridlabd 1000 100000
    python benchmarks/bench_devices_hvac.py --quick          # 1e5 houses; GridLAB-D 1,000
    python benchmarks/bench_devices_hvac.py --houses 1000000 --no-reference --gridlabd 1000
        # the interval target and the GridLAB-D ratio alone (no numpy reference, no other kinds)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.peers

from tests.peers.gridlabd import house_glm, random_houses, run_glm
from transactive.data import load_tmy3
from transactive.data.weather_tmy import WeatherSeries
from transactive.devices import _kernels
from transactive.devices.base import MarketInterval, PriceStats
from transactive.devices.heat_pump import HeatPumpPopulation
from transactive.devices.hvac import HvacPopulation
from transactive.devices.water_heater import WaterHeaterPopulation
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
WEATHER = WeatherSample(
    temperature_c=32.0,
    ghi_w_per_m2=600.0,
    dni_w_per_m2=500.0,
    dhi_w_per_m2=150.0,
    solar_zenith_deg=40.0,
    solar_azimuth_deg=200.0,
    relative_humidity=0.6,
)
REPEATS = 3
#: Intervals timed per row (each phase's best is kept).
INTERVALS = 5


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """The least of ``repeats`` timings (each ``run`` returns its own seconds)."""
    return min(run() for _ in range(repeats))


def steps_per_second(
    pop: HvacPopulation | WaterHeaterPopulation | HeatPumpPopulation, w: WeatherSample
) -> float:
    for k in range(2):
        pop.step(60 * k, 60, w)
    clock = [60 * 2]

    def five() -> float:
        start = time.perf_counter()
        for _ in range(5):
            pop.step(clock[0], 60, w)
            clock[0] += 60
        return time.perf_counter() - start

    return 5 * pop.n_devices / best_of(REPEATS, five)


def interval(pop: HvacPopulation, start_s: int, *, many: bool) -> tuple[float, float, float]:
    """Seconds of bid, respond and the five 1-minute steps of one 5-minute interval."""
    t0 = time.perf_counter()
    pop.bid(STATS, MarketInterval(start_s, 300), WEATHER)
    t1 = time.perf_counter()
    pop.respond(STATS.mean_per_kwh, 0.5)
    t2 = time.perf_counter()
    if many:
        pop.step_many(start_s, 60, [WEATHER] * 5)
    else:
        for k in range(5):
            pop.step(start_s + 60 * k, 60, WEATHER)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def best_interval(pop: HvacPopulation, *, many: bool, repeats: int) -> tuple[float, ...]:
    """Each phase's best over ``repeats`` intervals (one hour apart), and the best total."""
    runs = [interval(pop, 3600 * (r + 1), many=many) for r in range(repeats)]
    phases = np.array(runs)
    return (*phases.min(axis=0), float(phases.sum(axis=1).min()))


def ours_day(houses: dict[str, np.ndarray], weather: WeatherSeries) -> float:
    start = time.perf_counter()
    pop = HvacPopulation.from_gridlabd(houses)
    pop.step_many(0, weather.step_s, weather)
    return time.perf_counter() - start


def gridlabd_day(
    houses: dict[str, np.ndarray],
    weather: WeatherSeries,
    stages: dict[str, float],
    model_max: int,
) -> tuple[float, int]:
    """GridLAB-D's seconds for the day of ``houses``, and the number of models it took.

    More than ``model_max`` houses are split into consecutive models of at most that many,
    run one after the other (the houses do not interact: no feeder); the seconds and
    ``stages`` are their sums. GridLAB-D 6.0.0's load grows faster than the square of the
    objects (measured: 0.16 s for 1,000 houses, 60 s for 10,000; 100,000 were still
    loading after 40 minutes, py-spy in ``object_set_name -> addto_tree -> tree_get_height``,
    its name index), so a model of 100,000 houses never reaches its run; a user simulates them
    as several models.
    """
    n = int(np.size(next(iter(houses.values()))))
    total, models = 0.0, 0
    for first in range(0, n, model_max):
        part = {k: np.asarray(v)[first : first + model_max] for k, v in houses.items()}
        with tempfile.TemporaryDirectory() as tmp:
            glm = house_glm(
                part,
                weather,
                Path(tmp),
                record=False,
                minimum_timestep_s=weather.step_s,
                climate_step_recorder=False,
            )
            spent: dict[str, float] = {}
            seconds, _ = run_glm(glm, stages=spent)
        total += seconds
        models += 1
        for stage, value in spent.items():
            stages[stage] = stages.get(stage, 0.0) + value
    return total, models


def warm_up() -> float:
    """Compile (or load from the cache) every HVAC kernel's builds on a small population.

    Once as it is (the one-core builds), once with every call on the parallel builds (what
    large populations run), by lowering ``_kernels.PARALLEL_MIN_ELEMENTS`` meanwhile.
    """
    start = time.perf_counter()
    default = _kernels.PARALLEL_MIN_ELEMENTS
    try:
        for threshold in (default, 1):
            _kernels.PARALLEL_MIN_ELEMENTS = threshold
            pop = HvacPopulation.sample(200, np.random.default_rng(0))
            pop.step(0, 60, WEATHER)
            pop.step_many(60, 60, [WEATHER] * 2)
            pop.bid(STATS, MarketInterval(180, 300), WEATHER)
            pop.respond(STATS.mean_per_kwh, 0.5)
            pop.step(180, 60, WEATHER)
            pop.step_many(240, 60, [WEATHER] * 2)
            houses = HeatPumpPopulation.sample(50, np.random.default_rng(0))
            houses.step(0, 60, WeatherSample(temperature_c=0.0))
    finally:
        _kernels.PARALLEL_MIN_ELEMENTS = default
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1e5 houses, GridLAB-D at 1,000")
    parser.add_argument(
        "--gridlabd", type=int, nargs="*", help="house counts for the GridLAB-D comparison"
    )
    parser.add_argument("--houses", type=int, help="houses of sections 1 and 2 (default 1e6)")
    parser.add_argument(
        "--gridlabd-model-max",
        type=int,
        default=10_000,
        help="most houses in one GridLAB-D model; more are run as several (default 10,000)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="HVAC only, without the numpy reference's figures (section 1 skipped)",
    )
    args = parser.parse_args()
    n = args.houses or (100_000 if args.quick else 1_000_000)
    sizes = args.gridlabd or ([1_000] if args.quick else [1_000, 10_000])
    rng = np.random.default_rng(42)
    print(f"kernels compiled or loaded from the cache in {warm_up():.1f} s")

    hvac = HvacPopulation.sample(n, rng)
    for k in range(30):  # settle the thermostats so switching is realistic
        hvac.step(60 * k, 60, WEATHER)
    reference = copy.deepcopy(hvac)
    reference.kernel = "numpy"
    if not args.no_reference:
        fused = steps_per_second(hvac, WEATHER)
        numpy_rate = steps_per_second(reference, WEATHER)
        print(
            f"HVAC (ETP, exact switching):   {fused:,.0f} device-steps/s "
            f"(numpy reference {numpy_rate:,.0f}: {fused / numpy_rate:.1f}x)"
        )
        wh = WaterHeaterPopulation.sample(n, rng)
        rate = steps_per_second(wh, WEATHER)
        print(f"water heater (one-node tank):  {rate:,.0f} device-steps/s")
        hp = HeatPumpPopulation.sample(n, rng)
        rate = steps_per_second(hp, WeatherSample(temperature_c=0.0))
        print(f"heat pump (ETP, Staffell COP): {rate:,.0f} device-steps/s")

    print(f"one 5-minute interval of {n:,} HVAC houses (target < 0.2 s for 1,000,000):")
    rows = [
        ("numba, 5 x step", best_interval(hvac, many=False, repeats=INTERVALS)),
        ("numba, step_many", best_interval(hvac, many=True, repeats=INTERVALS)),
    ]
    if not args.no_reference:
        rows.append(("numpy reference, 5 x step", best_interval(reference, many=False, repeats=2)))
    base = rows[-1][1][-1]
    for label, (bid, respond, steps, total) in rows:
        versus = "" if args.no_reference else f" ({base / total:.1f}x the reference)"
        print(
            f"  {label:<26} bid {bid:.3f} s, respond {respond:.3f} s, five steps {steps:.3f} s;"
            f" total {total:.3f} s{versus}"
        )

    weather = load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)
    print("one day at a 60 s step, same houses and weather (target: 100x GridLAB-D):")
    for size in sizes:
        houses = random_houses(size, np.random.default_rng(size))
        stages: dict[str, float] = {}
        t_gld, models = gridlabd_day(houses, weather, stages, args.gridlabd_model_max)
        t_ours = min(ours_day(houses, weather) for _ in range(REPEATS))
        gld_rate = size * 24 / t_gld
        our_rate = size * 24 / t_ours
        print(
            f"  {size:>7,} houses: GridLAB-D 6.0.0 {t_gld:8.2f} s = {gld_rate:>11,.0f} house-h/s;"
            f" ours {t_ours:6.3f} s = {our_rate:>11,.0f} house-h/s;"
            f" ratio {our_rate / gld_rate:.0f}x"
        )
        # its stages, and its run alone (the load grows faster than the square of the houses:
        # see gridlabd_day)
        run_rate = size * 24 / stages["run"]
        split = f" in {models} models of at most {args.gridlabd_model_max:,}" if models > 1 else ""
        print(
            f"           GridLAB-D{split}: load {stages['load']:.2f} s, set-up"
            f" {stages['setup_after_load']:.2f} s, run {stages['run']:.2f} s"
            f" ({run_rate:,.0f} house-h/s run alone: ratio {our_rate / run_rate:.0f}x)"
        )


if __name__ == "__main__":
    main()
