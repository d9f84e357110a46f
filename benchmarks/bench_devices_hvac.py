"""Thermostatic device populations against GridLAB-D 6.0.0, and one 5-minute market interval.

Prints, in one run:

1. vectorized device-steps per second for each thermostatic kind (HVAC, water heater, heat pump);
2. bid + respond + five 1-minute physics steps for a million HVAC houses (target: under 2 s on
   one core), with the interval signatures ``bid(stats, MarketInterval(start_s, 300), weather)``
   and ``step(time_s, dt_s, weather)``;
3. house-hours simulated per second by GridLAB-D 6.0.0 (the ``gridlabd`` wheel) and by
   ``HvacPopulation`` on the same houses (GridLAB-D ``house`` parameters, converted by
   ``HvacPopulation.from_gridlabd``), the same day (Greensboro, NC, 9 July, pvlib's TMY3) and the
   same 60 s step (GridLAB-D's ``minimum_timestep=60``), with the ratio. GridLAB-D runs without
   recorders (its fastest configuration); its time is load + init + run of the GLM through the
   wheel's API, ours the population's construction and 1,440 steps.

    python benchmarks/bench_devices_hvac.py                  # 1e6 houses; GridLAB-D 1,000, 10,000
    python benchmarks/bench_devices_hvac.py --gridlabd 1000 100000
    python benchmarks/bench_devices_hvac.py --quick          # 1e5 houses; GridLAB-D 1,000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.peers

from tests.peers.gridlabd import house_glm, random_houses, run_glm
from transactive.data import load_tmy3
from transactive.data.weather_tmy import WeatherSeries
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


def steps_per_second(
    pop: HvacPopulation | WaterHeaterPopulation | HeatPumpPopulation, w: WeatherSample
) -> float:
    for k in range(2):
        pop.step(60 * k, 60, w)
    start = time.perf_counter()
    for k in range(2, 7):
        pop.step(60 * k, 60, w)
    return 5 * pop.n_devices / (time.perf_counter() - start)


def interval(pop: HvacPopulation, start_s: int) -> float:
    start = time.perf_counter()
    pop.bid(STATS, MarketInterval(start_s, 300), WEATHER)
    pop.respond(STATS.mean_per_kwh, 0.5)
    for k in range(5):
        pop.step(start_s + 60 * k, 60, WEATHER)
    return time.perf_counter() - start


def ours_day(houses: dict[str, np.ndarray], weather: WeatherSeries) -> float:
    start = time.perf_counter()
    pop = HvacPopulation.from_gridlabd(houses)
    for i in range(len(weather)):
        pop.step(i * weather.step_s, weather.step_s, weather[i])
    return time.perf_counter() - start


def gridlabd_day(houses: dict[str, np.ndarray], weather: WeatherSeries) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        glm = house_glm(
            houses,
            weather,
            Path(tmp),
            record=False,
            minimum_timestep_s=weather.step_s,
            climate_step_recorder=False,
        )
        seconds, _ = run_glm(glm)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1e5 houses, GridLAB-D at 1,000")
    parser.add_argument(
        "--gridlabd", type=int, nargs="*", help="house counts for the GridLAB-D comparison"
    )
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    sizes = args.gridlabd or ([1_000] if args.quick else [1_000, 10_000])
    rng = np.random.default_rng(42)

    hvac = HvacPopulation.sample(n, rng)
    for k in range(30):  # settle the thermostats so switching is realistic
        hvac.step(60 * k, 60, WEATHER)
    print(f"HVAC (ETP, exact switching):   {steps_per_second(hvac, WEATHER):,.0f} device-steps/s")
    wh = WaterHeaterPopulation.sample(n, rng)
    print(f"water heater (one-node tank):  {steps_per_second(wh, WEATHER):,.0f} device-steps/s")
    hp = HeatPumpPopulation.sample(n, rng)
    cold = WeatherSample(temperature_c=0.0)
    print(f"heat pump (ETP, Staffell COP): {steps_per_second(hp, cold):,.0f} device-steps/s")
    t_interval = interval(hvac, 3600)
    print(
        f"bid + respond + 5 x 1-min steps, {n:,} HVAC houses: {t_interval:.3f} s "
        "(target < 2 s for 1,000,000)"
    )

    weather = load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)
    print("one day at a 60 s step, same houses and weather:")
    for size in sizes:
        houses = random_houses(size, np.random.default_rng(size))
        t_gld = gridlabd_day(houses, weather)
        t_ours = ours_day(houses, weather)
        gld_rate = size * 24 / t_gld
        our_rate = size * 24 / t_ours
        print(
            f"  {size:>7,} houses: GridLAB-D 6.0.0 {t_gld:8.2f} s = {gld_rate:>11,.0f} house-h/s;"
            f" ours {t_ours:6.2f} s = {our_rate:>11,.0f} house-h/s;"
            f" ratio {our_rate / gld_rate:.0f}x"
        )


if __name__ == "__main__":
    main()
