"""Thermostatic device populations: device-steps per second, and one 5-minute market interval.

Prints, for each kind (HVAC, water heater, heat pump), vectorized device-steps per second; then
bid + respond + five 1-minute physics steps for a million HVAC houses (target: under 2 s on one
core), and the ratio against a per-object Python implementation of the same model (one plain
Python object per house, the same ETP closed form, thermostat and controller), timed on a sample
of houses in the same run and scaled per house.

    python benchmarks/bench_devices_hvac.py            # 1,000,000 houses, 10,000 per-object
    python benchmarks/bench_devices_hvac.py --quick    # 100,000 houses, 2,000 per-object
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from transactive.devices.base import PriceStats
from transactive.devices.heat_pump import HeatPumpPopulation
from transactive.devices.hvac import (
    MASS_INTERNAL_GAIN_FRACTION,
    MASS_SOLAR_GAIN_FRACTION,
    HvacPopulation,
)
from transactive.devices.water_heater import WaterHeaterPopulation
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
WEATHER = WeatherSample(temperature_c=32.0, ghi_w_per_m2=600.0)


class PythonHouse:
    """One cooling house as a plain Python object: same ETP solution, thermostat, controller."""

    def __init__(self, pop: HvacPopulation, i: int) -> None:
        self.ua = float(pop.ua_kw_per_k[i])
        self.hm = float(pop.mass_coupling_kw_per_k[i])
        self.ca = float(pop.air_capacity_kj_per_k[i])
        self.cm = float(pop.mass_capacity_kj_per_k[i])
        self.cap = float(pop.cooling_capacity_kw[i])
        self.cop = float(pop.cooling_cop[i])
        self.aperture = float(pop.solar_aperture_m2[i])
        self.gains = float(pop.internal_gain_kw[i])
        self.setpoint = float(pop.setpoint_c[i])
        self.tmin = float(pop.comfort_min_c[i])
        self.tmax = float(pop.comfort_max_c[i])
        self.db = float(pop.deadband_c[i])
        self.k_low = float(pop.ramp_low[i])
        self.k_high = float(pop.ramp_high[i])
        self.ta = float(pop.air_temperature_c[i])
        self.tm = float(pop.mass_temperature_c[i])
        self.on = bool(pop.on[i])
        self.duty = 1.0
        self.sp = self.setpoint
        self.t_out = pop.outdoor_temperature_c
        a11 = -(self.ua + self.hm) / self.ca
        a22 = -self.hm / self.cm
        tr, det = a11 + a22, self.ua * self.hm / (self.ca * self.cm)
        self.r1 = 0.5 * (tr - math.sqrt(tr * tr - 4 * det))
        self.r2 = det / self.r1
        self.bid_price = 0.0
        self.bid_power = 0.0

    def capacity(self, t_out: float) -> float:  # GridLAB-D curve fit, as in hvac.py
        return self.cap * (1.48924533 - 0.00514995 * (t_out * 1.8 + 32.0))

    def electric(self, t_out: float) -> float:
        t_f = max(t_out * 1.8 + 32.0, 40.0)
        return self.capacity(t_out) * (-0.01363961 + 0.01066989 * t_f) / self.cop

    def bid(self, s: PriceStats) -> tuple[float, float]:
        t = self.ta
        if t > self.setpoint:
            k, half = self.k_high, self.tmax - self.setpoint
        else:
            k, half = self.k_low, self.setpoint - self.tmin
        price = s.mean_per_kwh + (t - self.setpoint) * k * s.std_per_kwh / half
        price = min(max(price, s.price_floor_per_kwh), s.price_cap_per_kwh)
        power = self.electric(self.t_out)
        if t > self.tmax:
            price = s.price_cap_per_kwh
        elif t < self.tmin:
            price, power = s.price_floor_per_kwh, 0.0
        self.bid_price, self.bid_power = price, power
        return price, power

    def respond(self, p: float, fill: float, s: PriceStats) -> float:
        if p < self.bid_price:
            power = self.bid_power
        elif p > self.bid_price:
            power = 0.0
        else:
            power = fill * self.bid_power
        push = p - s.mean_per_kwh
        if push > 0:
            sp = self.setpoint + push * (self.tmax - self.setpoint) / (self.k_high * s.std_per_kwh)
        else:
            sp = self.setpoint + push * (self.setpoint - self.tmin) / (self.k_low * s.std_per_kwh)
        self.sp = min(max(sp, self.tmin), self.tmax)
        self.on = power > 0
        self.duty = power / self.bid_power if self.on else 1.0
        return power

    def step(self, dt: float, w: WeatherSample) -> float:
        t_out = w.temperature_c
        self.t_out = t_out
        cap = self.capacity(t_out)
        elec = self.electric(t_out)
        solar = self.aperture * w.ghi_w_per_m2 / 1000.0
        q_air = (1 - MASS_INTERNAL_GAIN_FRACTION) * self.gains + (
            1 - MASS_SOLAR_GAIN_FRACTION
        ) * solar
        q_mass = MASS_INTERNAL_GAIN_FRACTION * self.gains + MASS_SOLAR_GAIN_FRACTION * solar
        on_t, off_t = self.sp + 0.5 * self.db, self.sp - 0.5 * self.db
        if self.on and self.ta <= off_t:
            self.on = False
        elif not self.on and self.ta >= on_t:
            self.on = True
        remaining, running = dt, 0.0
        a11 = -(self.ua + self.hm) / self.ca
        a12, a21 = self.hm / self.ca, self.hm / self.cm
        for _ in range(9):
            qa = q_air - (cap * self.duty if self.on else 0.0)
            ta_ss = t_out + (qa + q_mass) / self.ua
            tm_ss = ta_ss + q_mass / self.hm
            da, dm = self.ta - ta_ss, self.tm - tm_ss
            gap = self.r1 - self.r2
            al1 = ((a11 - self.r2) * da + a12 * dm) / gap
            al2 = da - al1
            be1 = (a21 * da + (-a21 - self.r2) * dm) / gap
            be2 = dm - be1
            ta_end = (
                ta_ss + al1 * math.exp(self.r1 * remaining) + al2 * math.exp(self.r2 * remaining)
            )
            thr = off_t if self.on else on_t
            crossed = (ta_end <= thr) if self.on else (ta_end >= thr)
            tau = remaining
            if crossed:
                lo, hi, f_lo, t = 0.0, remaining, da + ta_ss - thr, 0.5 * remaining
                for _ in range(30):
                    e1, e2 = math.exp(self.r1 * t), math.exp(self.r2 * t)
                    f = ta_ss - thr + al1 * e1 + al2 * e2
                    if (f > 0) == (f_lo > 0):
                        lo, f_lo = t, f
                    else:
                        hi = t
                    slope = al1 * self.r1 * e1 + al2 * self.r2 * e2
                    newton = t - f / slope if slope != 0 else math.nan
                    t = newton if lo < newton < hi else 0.5 * (lo + hi)
                    if hi - lo < 1e-6:
                        break
                tau = t
            e1, e2 = math.exp(self.r1 * tau), math.exp(self.r2 * tau)
            self.ta = thr if crossed else ta_ss + al1 * e1 + al2 * e2
            self.tm = tm_ss + be1 * e1 + be2 * e2
            if self.on:
                running += tau * self.duty
            remaining -= tau
            if not crossed:
                break
            self.on = not self.on
        if not self.on:
            self.duty = 1.0
        return elec * running / dt


def interval_vectorized(pop: HvacPopulation) -> float:
    start = time.perf_counter()
    pop.bid(STATS)
    pop.respond(STATS.mean_per_kwh, 0.5)
    for _ in range(5):
        pop.step(60.0, WEATHER)
    return time.perf_counter() - start


def interval_objects(houses: list[PythonHouse]) -> float:
    start = time.perf_counter()
    for h in houses:
        h.bid(STATS)
    for h in houses:
        h.respond(STATS.mean_per_kwh, 0.5, STATS)
    for _ in range(5):
        for h in houses:
            h.step(60.0, WEATHER)
    return time.perf_counter() - start


def steps_per_second(
    pop: HvacPopulation | WaterHeaterPopulation | HeatPumpPopulation, w: WeatherSample
) -> float:
    for _ in range(2):
        pop.step(60.0, w)
    start = time.perf_counter()
    for _ in range(5):
        pop.step(60.0, w)
    return 5 * pop.n_devices / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k houses, 2k per-object")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    n_obj = 2_000 if args.quick else 10_000
    rng = np.random.default_rng(42)

    hvac = HvacPopulation.sample(n, rng)
    for _ in range(30):  # settle the thermostats so switching is realistic
        hvac.step(60.0, WEATHER)
    print(f"HVAC (ETP, exact switching):   {steps_per_second(hvac, WEATHER):,.0f} device-steps/s")
    wh = WaterHeaterPopulation.sample(n, rng)
    print(f"water heater (one-node tank):  {steps_per_second(wh, WEATHER):,.0f} device-steps/s")
    hp = HeatPumpPopulation.sample(n, rng)
    cold = WeatherSample(temperature_c=0.0)
    print(f"heat pump (ETP, Staffell COP): {steps_per_second(hp, cold):,.0f} device-steps/s")

    houses = [PythonHouse(hvac, i) for i in range(n_obj)]
    t_obj = interval_objects(houses)
    t_vec = interval_vectorized(hvac)
    per_obj = t_obj / n_obj
    print(
        f"bid + respond + 5 x 1-min steps, {n:,} HVAC houses: {t_vec:.3f} s "
        f"(target < 2 s for 1,000,000)"
    )
    print(
        f"per-object Python, {n_obj:,} houses: {t_obj:.3f} s -> {per_obj * n:.1f} s scaled to {n:,}"
    )
    print(f"ratio per-object / vectorized: {per_obj * n / t_vec:.0f}x")
    same = np.array([h.ta for h in houses]) - hvac.air_temperature_c[:n_obj]
    print(f"check: largest air-temperature difference between the two: {np.abs(same).max():.2e} K")


if __name__ == "__main__":
    main()
