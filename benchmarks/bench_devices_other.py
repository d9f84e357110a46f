"""Non-thermal device populations: device-steps per second (bid + respond + step).

For each kind (EV, battery, PV, micro-CHP, base load) it times the vectorized population over a
few 5-minute market intervals, and a per-object plain-Python implementation of the same model
(one Python object per device: the same bid, the same curve read at the price, the same physics;
PV calls pvlib once per system) on a sample of devices in the same run, and prints the ratio.

    python benchmarks/bench_devices_other.py            # 1,000,000 devices per kind
    python benchmarks/bench_devices_other.py --quick    # 100,000 devices per kind
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pvlib

from transactive.data import load_simbench_profiles, load_tmy3
from transactive.devices.base import PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.pv import PVPopulation
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
DT = 300.0


def power_at(points: list[tuple[float, float]], price: float, fill: float) -> float:
    """One curve's power at a price (right limit + fill x block), in plain Python."""

    def limit(right: bool) -> float:
        j = sum(1 for p, _ in points if (p <= price if right else p < price))
        if j == 0:
            return points[0][1]
        if j == len(points):
            return points[-1][1]
        (p0, q0), (p1, q1) = points[j - 1], points[j]
        return q0 + (q1 - q0) * (price - p0) / (p1 - p0)

    lo, hi = limit(True), limit(False)
    return lo + fill * (hi - lo)


# ---------------------------------------------------------------- per-object reference models


class PyEV:
    def __init__(self, pop: EVPopulation, i: int) -> None:
        self.arr, self.dep = float(pop.arrival_s[i]), float(pop.departure_s[i])
        self.need, self.pmax = float(pop.energy_needed_kwh[i]), float(pop.max_power_kw[i])
        self.eff, self.k = float(pop.efficiency[i]), float(pop.band_k[i])
        self.t, self.done, self.rate = pop.time_s, float(pop.delivered_kwh[i]), 0.0
        self.points: list[tuple[float, float]] = []

    def bid(self, s: PriceStats) -> None:
        t, cap, floor = self.t, s.price_cap_per_kwh, s.price_floor_per_kwh
        plugged = self.arr <= t < self.dep
        g = (max(self.need - self.done, 0.0) / self.eff) if plugged else 0.0
        left = max(self.dep - t, 0.0)
        now = self.pmax * min(DT, left) / 3600.0
        after = self.pmax * max(left - DT, 0.0) / 3600.0
        flex = min(g, now)
        must = min(max(g - after, 0.0), flex)
        u = min(max(g / (self.pmax * left / 3600.0), 0.0), 1.0) if left > 0 else 0.0
        lo = min(max(s.mean_per_kwh - self.k * s.std_per_kwh, floor), cap)
        hi = min(max(s.mean_per_kwh + self.k * s.std_per_kwh, floor), cap)
        pf = lo + u * (hi - lo)
        k = 3600.0 / DT
        self.points = [(pf, flex * k), (pf, must * k), (cap, must * k), (cap, 0.0)]

    def respond(self, price: float, fill: float) -> float:
        power = power_at(self.points, price, fill)
        overlap = min(DT, max(self.dep - self.t, 0.0))
        self.rate = power * DT / overlap if overlap > 0 else 0.0
        return power

    def step(self, dt: float, w: WeatherSample) -> float:
        plugged = min(max(min(self.t + dt, self.dep) - max(self.t, self.arr), 0.0), dt)
        grid = min(self.rate * plugged / 3600.0, max(self.need - self.done, 0.0) / self.eff)
        self.done = min(self.done + grid * self.eff, self.need)
        self.t += dt
        return grid * 3600.0 / dt


class PyBattery:
    def __init__(self, pop: BatteryPopulation, i: int) -> None:
        self.c = float(pop.capacity_kwh[i])
        self.pc, self.pd = float(pop.charge_power_max_kw[i]), float(pop.discharge_power_max_kw[i])
        self.ec, self.ed = float(pop.charge_efficiency[i]), float(pop.discharge_efficiency[i])
        self.lo, self.hi = float(pop.soc_min_pu[i]), float(pop.soc_max_pu[i])
        self.soc, self.k = float(pop.soc_pu[i]), float(pop.band_k[i])
        self.points: list[tuple[float, float]] = []
        self.setpoint = 0.0

    def limits(self, dt: float) -> tuple[float, float]:
        h = dt / 3600.0
        room = max(self.hi - self.soc, 0.0) * self.c
        avail = max(self.soc - self.lo, 0.0) * self.c
        return min(self.pc, room / (self.ec * h)), min(self.pd, avail * self.ed / h)

    def bid(self, s: PriceStats) -> None:
        charge, discharge = self.limits(DT)
        buy = s.mean_per_kwh - self.k * s.std_per_kwh
        sell = max(s.mean_per_kwh + self.k * s.std_per_kwh, buy / (self.ec * self.ed))
        cap, floor = s.price_cap_per_kwh, s.price_floor_per_kwh
        buy, sell = min(max(buy, floor), cap), min(max(sell, floor), cap)
        self.points = [(buy, charge), (buy, 0.0), (sell, 0.0), (sell, -discharge)]

    def respond(self, price: float, fill: float) -> float:
        self.setpoint = power_at(self.points, price, fill)
        return self.setpoint

    def step(self, dt: float, w: WeatherSample) -> float:
        charge, discharge = self.limits(dt)
        p = min(max(self.setpoint, -discharge), charge)
        stored = p * self.ec if p >= 0 else p / self.ed
        self.soc = min(max(self.soc + stored * dt / 3600.0 / self.c, self.lo), self.hi)
        return p


class PyPV:
    def __init__(self, pop: PVPopulation, i: int) -> None:
        self.dc, self.ac = float(pop.dc_capacity_kw[i]), float(pop.ac_capacity_kw[i])
        self.tilt, self.az = float(pop.tilt_deg[i]), float(pop.azimuth_deg[i])
        self.gamma, self.loss = float(pop.gamma_pdc_per_c[i]), float(pop.system_loss_pu[i])
        self.albedo = float(pop.albedo[i])
        c = float(pop.curtailment_price_per_kwh[i])
        self.curtail = None if math.isnan(c) else c
        self.par = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][pop.temperature_model]
        self.eta, self.wind = pop.eta_inv_nom, pop.wind_speed_m_per_s
        self.expected, self.share, self.sell = 0.0, 1.0, 0.0
        self.points: list[tuple[float, float]] = []

    def output(self, w: WeatherSample) -> float:
        if w.solar_zenith_deg >= 90.0 or w.ghi_w_per_m2 <= 0.0:
            return 0.0
        poa = pvlib.irradiance.get_total_irradiance(
            self.tilt,
            self.az,
            w.solar_zenith_deg,
            w.solar_azimuth_deg,
            w.dni_w_per_m2,
            w.ghi_w_per_m2,
            w.dhi_w_per_m2,
            albedo=self.albedo,
        )["poa_global"]
        t_cell = pvlib.temperature.sapm_cell(poa, w.temperature_c, self.wind, **self.par)
        dc = max(pvlib.pvsystem.pvwatts_dc(poa, t_cell, self.dc, self.gamma) * (1 - self.loss), 0)
        return float(pvlib.inverter.pvwatts(dc, self.ac / self.eta, eta_inv_nom=self.eta))

    def bid(self, s: PriceStats) -> None:
        floor = s.price_floor_per_kwh
        sell = floor if self.curtail is None else self.curtail
        self.sell = min(max(sell, floor), s.price_cap_per_kwh)
        self.points = [(self.sell, 0.0), (self.sell, -self.expected)]

    def respond(self, price: float, fill: float) -> float:
        power = power_at(self.points, price, fill)
        if self.expected > 0:
            self.share = min(max(-power / self.expected, 0.0), 1.0)
        else:
            self.share = 1.0 if price >= self.sell else 0.0
        return power

    def step(self, dt: float, w: WeatherSample) -> float:
        actual = self.output(w)
        self.expected = actual
        return -actual * self.share


class PyCHP:
    def __init__(self, pop: CHPPopulation, i: int) -> None:
        self.pmax, self.sigma = (
            float(pop.electric_power_max_kw[i]),
            float(pop.electric_to_thermal_ratio[i]),
        )
        self.eta, self.fuel = float(pop.electric_efficiency[i]), float(pop.fuel_price_per_kwh[i])
        self.c, self.soc = float(pop.buffer_capacity_kwh[i]), float(pop.buffer_soc_pu[i])
        self.lo, self.ua = float(pop.soc_min_pu[i]), float(pop.ua_kw_per_c[i])
        self.tb, self.dhw = float(pop.balance_temperature_c[i]), float(pop.hot_water_kw[i])
        self.k, self.q = float(pop.band_k[i]), float(pop.expected_heat_kw[i])
        self.points: list[tuple[float, float]] = []
        self.setpoint = 0.0

    def limits(self, dt: float, q: float) -> tuple[float, float]:
        h = dt / 3600.0
        e = self.soc * self.c
        avail = min(max(self.sigma * ((self.c - e) / h + q), 0.0), self.pmax)
        must = min(max(self.sigma * ((self.lo * self.c - e) / h + q), 0.0), avail)
        return must, avail

    def bid(self, s: PriceStats) -> None:
        cap, floor = s.price_cap_per_kwh, s.price_floor_per_kwh
        must, avail = self.limits(DT, self.q)
        cost = self.fuel / self.eta
        top = avail if cost <= cap else must
        p1 = min(max(cost, floor), cap)
        p2 = min(max(cost + self.k * s.std_per_kwh, floor), cap)
        self.points = [(floor, 0.0), (floor, -must), (p1, -must), (p2, -top)]

    def respond(self, price: float, fill: float) -> float:
        self.setpoint = power_at(self.points, price, fill)
        return self.setpoint

    def step(self, dt: float, w: WeatherSample) -> float:
        h = dt / 3600.0
        q = self.ua * max(self.tb - w.temperature_c, 0.0) + self.dhw
        _, avail = self.limits(dt, q)
        p = min(max(-self.setpoint, 0.0), avail)
        e = self.soc * self.c + (p / self.sigma - q) * h
        self.soc = min(max(e, 0.0), self.c) / self.c
        self.q = q
        return -p


class PyLoad:
    def __init__(self, pop: BaseLoadPopulation, i: int, rows: list[list[float]]) -> None:
        self.row = rows[int(pop.profile_index[i])]  # shared: one list per profile
        self.energy, self.offset = float(pop.annual_energy_kwh[i]), float(pop.time_offset_s[i])
        self.step_s, self.t = pop.profile_step_s, pop.time_s
        self.period = (len(self.row) - 1) * self.step_s
        self.points: list[tuple[float, float]] = []
        self.served = 1.0

    def share(self, t: float) -> float:
        local = t + self.offset
        years = math.floor(local / self.period)
        pos = (local - years * self.period) / self.step_s
        j = min(int(pos), len(self.row) - 2)
        return float(years + self.row[j] + (pos - j) * (self.row[j + 1] - self.row[j]))

    def mean(self, t: float, dt: float) -> float:
        return self.energy * (self.share(t + dt) - self.share(t)) * 3600.0 / dt

    def bid(self, s: PriceStats) -> None:
        cap = s.price_cap_per_kwh
        self.points = [(cap, self.mean(self.t, DT)), (cap, 0.0)]

    def respond(self, price: float, fill: float) -> float:
        power = power_at(self.points, price, fill)
        asked = self.points[0][1]
        self.served = power / asked if asked > 0 else 1.0
        return power

    def step(self, dt: float, w: WeatherSample) -> float:
        p = self.mean(self.t, dt) * self.served
        self.t += dt
        return p


# ---------------------------------------------------------------- timing


def run_vectorized(pop: Any, weather: list[WeatherSample], prices: np.ndarray) -> float:
    start = time.perf_counter()
    for w, price in zip(weather, prices, strict=True):
        pop.bid(STATS)
        pop.respond(float(price), 0.5)
        pop.step(DT, w)
    return time.perf_counter() - start


def run_objects(objs: list[Any], weather: list[WeatherSample], prices: np.ndarray) -> float:
    start = time.perf_counter()
    for w, price in zip(weather, prices, strict=True):
        for o in objs:
            o.bid(STATS)
            o.respond(float(price), 0.5)
            o.step(DT, w)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 devices per kind")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    steps = 5 if args.quick else 10
    sample = 1_000 if args.quick else 3_000
    rng = np.random.default_rng(2019)
    day = load_tmy3(step_s=int(DT), start_day=172, days=1)
    weather = [day[132 + k] for k in range(steps)]  # from 11:00, sun up
    prices = rng.uniform(0.0, 0.3, steps)
    profiles = load_simbench_profiles()
    noon = 172 * 86400.0 + 11 * 3600.0

    def ev() -> EVPopulation:
        pop = EVPopulation.sample(n, np.random.default_rng(1))
        pop.time_s = 19 * 3600.0  # most cars plugged in
        return pop

    def pv() -> PVPopulation:
        pop = PVPopulation.sample(n, np.random.default_rng(2), curtailable_share=0.5)
        pop.set_forecast(weather[0])
        return pop

    def load() -> BaseLoadPopulation:
        return BaseLoadPopulation.sample(
            n, np.random.default_rng(5), profiles=profiles, time_s=noon
        )

    fraction = np.cumsum(np.concatenate([np.zeros((6, 1)), profiles.values_pu], axis=1), axis=1)
    fraction /= fraction[:, -1:]
    rows = [r.tolist() for r in fraction]
    kinds: list[tuple[str, Callable[[], Any], Callable[[Any, int], Any], int]] = [
        ("EV", ev, PyEV, sample),
        (
            "battery",
            lambda: BatteryPopulation.sample(n, np.random.default_rng(3)),
            PyBattery,
            sample,
        ),
        ("PV", pv, PyPV, max(sample // 20, 20)),
        ("micro-CHP", lambda: CHPPopulation.sample(n, np.random.default_rng(4)), PyCHP, sample),
        ("base load", load, lambda p, i: PyLoad(p, i, rows), sample),
    ]
    print(f"{n:,} devices per kind, {steps} market intervals of {DT:.0f} s (bid + respond + step)")
    print(
        f"{'kind':<10} {'vectorized dev-steps/s':>24} {'per-object dev-steps/s':>24} {'ratio':>8}"
    )
    for name, make, python_cls, m in kinds:
        pop = make()
        seconds = run_vectorized(pop, weather, prices)
        rate = n * steps / seconds
        ref = make()
        objs = [python_cls(ref, i) for i in range(m)]
        ref_seconds = run_objects(objs, weather, prices)
        ref_rate = m * steps / ref_seconds
        print(f"{name:<10} {rate:>24,.0f} {ref_rate:>24,.0f} {rate / ref_rate:>7,.0f}x")


if __name__ == "__main__":
    main()
