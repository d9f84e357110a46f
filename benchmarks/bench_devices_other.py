"""Device populations other than HVAC: device-steps per second (bid + respond + step), and HVAC.

For each kind (EV, battery, PV, micro-CHP, base load, water heater) it times the library's
population over a few 5-minute market intervals (bid, clear-free respond at a random price, five
60-s physics steps), three times: with its fused numba kernels (``kernel="numba"``, the default),
the five steps as five ``step`` calls and as one ``step_many`` call (what the simulator does),
and with its numpy reference path (``kernel="numpy"``, the implementation before issue 17). The
HVAC population runs first, the same way on the same number of houses and the same weather
(summer, from 11:00): issue 17 asks every other kind to be at least as fast per device-step,
and ``vs HVAC`` is each kind's ``step_many`` rate over the HVAC's, measured in this run (the
micro-CHP, which the simulator steps one ``step`` at a time, by its five ``step`` calls). Against
both it times the fastest simple alternative a user would write: the same model in a few lines of
plain numpy over arrays (no validation, no curve objects, the power read straight off the piece
of the bid the price falls in; prices are drawn at random, so they never sit on a breakpoint and
the marginal fill plays no part; none for the HVAC and the water heater, whose thermostat
switching, schedules and dry runs have no few-line equivalent). All run in the same process on
the same devices, and the metered energies are checked against each other (within 1e-6
relative) before the times are printed, so the ratios compare equal work. Before its timings
every kind runs one interval on a population of the same size by ``step`` and one by
``step_many``, so numba's import and the kernels' compilation (or their loading from the cache;
a large population also runs the parallel builds) are not timed; that first interval is printed
on its own.

``kernel/numpy`` is the speed-up of the kernels (five ``step`` calls) over the reference path;
``kernel/plain`` compares the library with the bare arithmetic (a ratio below 1 is the price of
what the library adds: validation of every argument, curves with ids that a market can clear,
exact interval accounting).

    python benchmarks/bench_devices_other.py            # 1,000,000 devices per kind
    python benchmarks/bench_devices_other.py --quick    # 100,000 devices per kind
    python benchmarks/bench_devices_other.py --energy   # interval energy against allocation

``--energy`` clears 1,000 devices of each kind for a 5-minute interval with ample and with
binding supply, steps the interval at 60 s (PV under the TMY minutes, bid on the first) and
prints the metered interval energy against the allocation, in aggregate and the worst device.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pvlib

from transactive.data import load_simbench_profiles, load_tmy3
from transactive.devices.base import MarketInterval, PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.hvac import HvacPopulation
from transactive.devices.pv import PVPopulation
from transactive.devices.water_heater import WaterHeaterPopulation
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
IV = 300  # market interval (s)
DT = 60  # physics step (s)

Arrays = dict[str, Any]


# ---------------------------------------------------------------- plain-numpy baselines
# Each function is one market interval of one kind: bid, respond at ``price``, step IV / DT
# times; it updates the state in ``a`` and returns the metered energy per device (kWh).


def ev_numpy(a: Arrays, start: int, price: float, weather: list[WeatherSample]) -> Any:
    s, e = start, start + IV
    plugged = np.clip(np.minimum(e, a["dep"]) - np.maximum(s, a["arr"]), 0, None)
    need = np.where(plugged > 0, np.maximum(a["need"] - a["done"], 0) / a["eff"], 0)
    flex = np.minimum(need, a["p"] * plugged / 3600)
    must = np.clip(need - a["p"] * np.maximum(a["dep"] - e, 0) / 3600, 0, flex)
    left = a["dep"] - np.maximum(s, a["arr"])
    urgency = np.clip(np.where(left > 0, need / (a["p"] * np.maximum(left, 1) / 3600), 0), 0, 1)
    band = a["k"] * STATS.std_per_kwh
    lo = np.clip(STATS.mean_per_kwh - band, 0, 1)
    hi = np.clip(STATS.mean_per_kwh + band, 0, 1)
    energy = np.where(price < lo + urgency * (hi - lo), flex, must)
    rate = np.where(plugged > 0, energy * 3600 / np.maximum(plugged, 1), 0)
    metered = np.zeros_like(rate)
    for t in range(s, e, DT):
        on = np.clip(np.minimum(t + DT, a["dep"]) - np.maximum(t, a["arr"]), 0, DT)
        kwh = np.minimum(rate * on / 3600, np.maximum(a["need"] - a["done"], 0) / a["eff"])
        a["done"] = a["done"] + kwh * a["eff"]
        metered += kwh
    return metered


def battery_numpy(a: Arrays, start: int, price: float, weather: list[WeatherSample]) -> Any:
    def limits(seconds: float) -> tuple[Any, Any]:
        h = seconds / 3600
        room = np.maximum(a["hi"] - a["soc"], 0) * a["cap"]
        avail = np.maximum(a["soc"] - a["lo"], 0) * a["cap"]
        return np.minimum(a["pc"], room / (a["ec"] * h)), np.minimum(a["pd"], avail * a["ed"] / h)

    charge, discharge = limits(IV)
    band = a["k"] * STATS.std_per_kwh
    buy = STATS.mean_per_kwh - band
    sell = np.clip(np.maximum(STATS.mean_per_kwh + band, buy / (a["ec"] * a["ed"])), 0, 1)
    setpoint = np.where(price < np.clip(buy, 0, 1), charge, np.where(price > sell, -discharge, 0))
    metered = np.zeros_like(setpoint)
    for _ in range(start, start + IV, DT):
        c, d = limits(DT)
        power = np.clip(setpoint, -d, c)
        stored = np.where(power >= 0, power * a["ec"], power / a["ed"])
        a["soc"] = np.clip(a["soc"] + stored * DT / 3600 / a["cap"], a["lo"], a["hi"])
        metered += power * DT / 3600
    return metered


def pv_numpy(a: Arrays, start: int, price: float, weather: list[WeatherSample]) -> Any:
    def output(w: WeatherSample) -> Any:
        poa = pvlib.irradiance.get_total_irradiance(
            a["tilt"], a["az"], w.solar_zenith_deg, w.solar_azimuth_deg,
            w.dni_w_per_m2, w.ghi_w_per_m2, w.dhi_w_per_m2, albedo=a["albedo"],
        )["poa_global"]  # fmt: skip
        t_cell = pvlib.temperature.sapm_cell(poa, w.temperature_c, 1.0, **a["sapm"])
        dc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, a["dc"], a["gamma"]) * (1 - a["loss"])
        return pvlib.inverter.pvwatts(np.maximum(dc, 0), a["ac"] / 0.96, eta_inv_nom=0.96)

    expected = output(weather[0])  # the forecast: the interval's first sample
    selling = price > np.where(np.isnan(a["curtail"]), 0.0, a["curtail"])
    metered = np.zeros_like(expected)
    for w in weather:
        metered -= np.where(selling, output(w), 0.0) * DT / 3600
    return metered


def chp_numpy(a: Arrays, start: int, price: float, weather: list[WeatherSample]) -> Any:
    def limits(seconds: float, heat: Any) -> tuple[Any, Any]:
        h = seconds / 3600
        stored = a["soc"] * a["buf"]
        available = np.clip(a["sigma"] * ((a["buf"] - stored) / h + heat), 0, a["pmax"])
        must = np.clip(a["sigma"] * ((a["soc_min"] * a["buf"] - stored) / h + heat), 0, available)
        return must, available

    def heat_of(w: WeatherSample) -> Any:
        return a["ua"] * np.maximum(a["t_bal"] - w.temperature_c, 0) + a["hot"]

    must, available = limits(IV, heat_of(weather[0]))
    cost = a["fuel"] / a["eta"]
    top = np.where(cost <= 1.0, available, must)
    p1 = np.clip(cost, 0, 1)
    p2 = np.clip(cost + a["k"] * STATS.std_per_kwh, 0, 1)
    ramp = np.clip((price - p1) / np.maximum(p2 - p1, 1e-300), 0, 1)
    setpoint = np.where(price <= p1, must, must + ramp * (top - must))
    metered = np.zeros_like(setpoint)
    for w in weather:
        heat = heat_of(w)
        electric = np.clip(setpoint, 0, limits(DT, heat)[1])
        stored = a["soc"] * a["buf"] + (electric / a["sigma"] - heat) * DT / 3600
        a["soc"] = np.clip(stored, 0, a["buf"]) / a["buf"]
        metered -= electric * DT / 3600
    return metered


def load_numpy(a: Arrays, start: int, price: float, weather: list[WeatherSample]) -> Any:
    metered = np.zeros(a["energy"].size)
    for t in range(start, start + IV, DT):

        def share(time_s: float) -> Any:
            pos = (time_s + a["offset"]) % a["period"] / a["step"]
            j = pos.astype(np.int64)
            f = a["fraction"][a["row"], j]
            return f + (pos - j) * (a["fraction"][a["row"], j + 1] - f)

        metered += a["energy"] * (share(t + DT) - share(t))
    return metered


# ---------------------------------------------------------------- state for the baselines


def ev_arrays(pop: EVPopulation) -> Arrays:
    return {
        "arr": pop.arrival_s.copy(), "dep": pop.departure_s.copy(),
        "need": pop.energy_needed_kwh.copy(), "p": pop.max_power_kw.copy(),
        "eff": pop.efficiency.copy(), "k": pop.band_k.copy(), "done": pop.delivered_kwh.copy(),
    }  # fmt: skip


def battery_arrays(pop: BatteryPopulation) -> Arrays:
    return {
        "cap": pop.capacity_kwh.copy(), "pc": pop.charge_power_max_kw.copy(),
        "pd": pop.discharge_power_max_kw.copy(), "ec": pop.charge_efficiency.copy(),
        "ed": pop.discharge_efficiency.copy(), "lo": pop.soc_min_pu.copy(),
        "hi": pop.soc_max_pu.copy(), "k": pop.band_k.copy(), "soc": pop.soc_pu.copy(),
    }  # fmt: skip


def pv_arrays(pop: PVPopulation) -> Arrays:
    sapm = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][pop.temperature_model]
    return {
        "tilt": pop.tilt_deg, "az": pop.azimuth_deg, "albedo": pop.albedo,
        "dc": pop.dc_capacity_kw, "ac": pop.ac_capacity_kw, "gamma": pop.gamma_pdc_per_c,
        "loss": pop.system_loss_pu, "curtail": pop.curtailment_price_per_kwh,
        "sapm": {"a": sapm["a"], "b": sapm["b"], "deltaT": sapm["deltaT"]},
    }  # fmt: skip


def chp_arrays(pop: CHPPopulation) -> Arrays:
    return {
        "pmax": pop.electric_power_max_kw, "sigma": pop.electric_to_thermal_ratio,
        "eta": pop.electric_efficiency, "fuel": pop.fuel_price_per_kwh,
        "buf": pop.buffer_capacity_kwh, "soc_min": pop.soc_min_pu, "ua": pop.ua_kw_per_c,
        "t_bal": pop.balance_temperature_c, "hot": pop.hot_water_kw, "k": pop.band_k,
        "soc": np.asarray(pop.buffer_soc_pu).copy(),
    }  # fmt: skip


def load_arrays(pop: BaseLoadPopulation) -> Arrays:
    return {
        "energy": pop.annual_energy_kwh, "offset": pop.time_offset_s, "row": pop.profile_index,
        "fraction": pop._fraction, "period": pop._period_s, "step": pop.profile_step_s,
    }  # fmt: skip


# ---------------------------------------------------------------- the runs


def first_interval(pop: Any, start: int, weather: list[WeatherSample]) -> float:
    """Seconds of a population's first interval (numba's import and compilation included).

    Then an interval by ``step_many``, so its kernels are compiled (or loaded) too, untimed.
    """
    per_interval = IV // DT
    begin = time.perf_counter()
    run_library(pop, start, weather[:per_interval], np.array([0.1]))
    seconds = time.perf_counter() - begin
    if hasattr(pop, "step_many"):
        run_library(pop, start + IV, weather[per_interval:], np.array([0.1]), many=True)
    return seconds


def run_library(
    pop: Any, start: int, weather: list[WeatherSample], prices: np.ndarray, *, many: bool = False
) -> tuple[float, float]:
    """Seconds for every interval, and the total metered energy (kWh).

    The interval's steps as one ``step_many`` call with ``many``, else one ``step`` each.
    """
    total = 0.0
    begin = time.perf_counter()
    per_interval = IV // DT
    for k, price in enumerate(prices):
        s = start + k * IV
        window = weather[k * per_interval : (k + 1) * per_interval]
        pop.bid(STATS, MarketInterval(s, IV), window[0])
        pop.respond(float(price), 0.5)
        if many:
            total += float(pop.step_many(s, DT, window).energy_kwh.sum())
            continue
        for j, t in enumerate(range(s, s + IV, DT)):
            total += float(pop.step(t, DT, window[j]).energy_kwh.sum())
    return time.perf_counter() - begin, total


def run_numpy(
    fn: Callable[[Arrays, int, float, list[WeatherSample]], Any],
    a: Arrays,
    start: int,
    weather: list[WeatherSample],
    prices: np.ndarray,
) -> tuple[float, float]:
    total = 0.0
    begin = time.perf_counter()
    per_interval = IV // DT
    for k, price in enumerate(prices):
        window = weather[k * per_interval : (k + 1) * per_interval]
        total += float(fn(a, start + k * IV, float(price), window).sum())
    return time.perf_counter() - begin, total


def interval_energy() -> None:
    """Metered interval energy against the allocation, 1,000 devices of each kind."""
    minutes = load_tmy3(step_s=DT, start_day=172, days=1)
    noon = [minutes[11 * 60 + k] for k in range(IV // DT)]
    calm = [WeatherSample(temperature_c=2.0)] * (IV // DT)
    n = 1000

    def ev_case(binding: bool) -> tuple[Any, int, list[WeatherSample], Callable[[Any], Any]]:
        def market(curves: Any) -> Any:
            cap = 0.3 * float(curves.power_at(0.0).sum()) if binding else np.inf
            return clear(curves, price_cap=1.0, supply=Supply(price_per_kwh=0.05, capacity_kw=cap))

        return EVPopulation.sample(n, np.random.default_rng(11)), 19 * 3600, calm, market

    def battery_case(binding: bool) -> tuple[Any, int, list[WeatherSample], Callable[[Any], Any]]:
        def market(curves: Any) -> Any:
            cap = 0.5 * float(curves.power_at(0.0).sum()) if binding else np.inf
            return clear(curves, price_cap=1.0, supply=Supply(price_per_kwh=0.01, capacity_kw=cap))

        return BatteryPopulation.sample(n, np.random.default_rng(21)), 0, calm, market

    def pv_case(binding: bool) -> tuple[Any, int, list[WeatherSample], Callable[[Any], Any]]:
        def market(curves: Any) -> Any:  # the feeder takes power back at 0.05, up to a rating
            rating = (0.4 if binding else 2.0) * -float(curves.power_at(1.0).sum())
            return clear(curves, price_cap=1.0, supply=Supply(0.05, 0.0, rating))

        pop = PVPopulation.sample(n, np.random.default_rng(12), curtailable_share=0.5)
        return pop, 11 * 3600, noon, market

    def chp_case(binding: bool) -> tuple[Any, int, list[WeatherSample], Callable[[Any], Any]]:
        def market(curves: Any) -> Any:  # the feeder takes power back at a price, up to a rating
            offer = -float(curves.power_at(1.0).sum())
            price, rating = (0.21, 0.5 * offer) if binding else (0.9, 2.0 * offer)
            return clear(curves, price_cap=1.0, supply=Supply(price, 0.0, rating))

        pop = CHPPopulation.sample(n, np.random.default_rng(14), fuel_price_per_kwh=0.03)
        return pop, 0, calm, market

    def load_case(binding: bool) -> tuple[Any, int, list[WeatherSample], Callable[[Any], Any]]:
        def market(curves: Any) -> Any:
            cap = 0.6 * float(curves.power_at(0.0).sum()) if binding else np.inf
            return clear(curves, price_cap=1.0, supply=Supply(price_per_kwh=0.1, capacity_kw=cap))

        pop = BaseLoadPopulation.sample(n, np.random.default_rng(3))
        return pop, 172 * 86400 + 18 * 3600, calm, market

    print(f"{n:,} devices per kind, one {IV} s interval stepped at {DT} s")
    print(
        f"{'kind':<10} {'supply':<8} {'allocated kWh':>14} {'metered kWh':>12} "
        f"{'aggregate':>10} {'worst device kWh':>17} {'clearing':>16}"
    )
    cases = [("EV", ev_case), ("battery", battery_case), ("PV", pv_case),
             ("micro-CHP", chp_case), ("base load", load_case)]  # fmt: skip
    for name, case in cases:
        for binding in (False, True):
            pop, start, window, market = case(binding)
            curves = pop.bid(STATS, MarketInterval(start, IV), window[0])
            result = market(curves)
            pop.respond(result.clearing_price, result.marginal_fill)
            metered = np.zeros(pop.n_devices)
            for j, t in enumerate(range(start, start + IV, DT)):
                metered += pop.step(t, DT, window[j]).energy_kwh
            allocated = result.allocation_kw * IV / 3600
            error = (metered.sum() - allocated.sum()) / abs(allocated.sum())
            worst = float(np.abs(metered - allocated).max())
            print(
                f"{name:<10} {'binding' if binding else 'ample':<8} {allocated.sum():>14.3f} "
                f"{metered.sum():>12.3f} {error:>+9.3%} {worst:>17.2e} "
                f"{result.clearing_type.value:>16}"
            )
    print(
        "base load, binding: the households are rationed at the cap but draw their profile "
        "(BaseLoadPopulation.unallocated_kw), so metered exceeds allocated by the shortage."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 devices per kind")
    parser.add_argument("--energy", action="store_true", help="interval energy, 1,000 devices")
    args = parser.parse_args()
    if args.energy:
        interval_energy()
        return
    n = 100_000 if args.quick else 1_000_000
    intervals = 3 if args.quick else 6
    rng = np.random.default_rng(2019)
    minutes = load_tmy3(step_s=DT, start_day=172, days=1)
    weather = [minutes[11 * 60 + k] for k in range(intervals * IV // DT)]  # from 11:00, sun up
    prices = rng.uniform(0.0, 0.3, intervals)
    profiles = load_simbench_profiles()

    kinds: list[tuple[str, Callable[[], Any], Callable[[Any], Arrays] | None, Any, int]] = [
        ("HVAC", lambda: HvacPopulation.sample(n, np.random.default_rng(7)), None, None,
         11 * 3600),
        ("EV", lambda: EVPopulation.sample(n, np.random.default_rng(1)), ev_arrays,
         ev_numpy, 19 * 3600),
        ("battery", lambda: BatteryPopulation.sample(n, np.random.default_rng(3)),
         battery_arrays, battery_numpy, 11 * 3600),
        ("PV", lambda: PVPopulation.sample(
            n, np.random.default_rng(2), curtailable_share=0.5), pv_arrays, pv_numpy,
         11 * 3600),
        ("micro-CHP", lambda: CHPPopulation.sample(n, np.random.default_rng(4)),
         chp_arrays, chp_numpy, 11 * 3600),
        ("base load", lambda: BaseLoadPopulation.sample(
            n, np.random.default_rng(5), profiles=profiles), load_arrays, load_numpy,
         172 * 86400 + 11 * 3600),
        ("water heat", lambda: WaterHeaterPopulation.sample(n, np.random.default_rng(6)),
         None, None, 6 * 3600),
    ]  # fmt: skip

    print(
        f"{n:,} devices per kind, {intervals} market intervals of {IV} s, physics step {DT} s "
        "(bid + respond + steps), device-steps/s"
    )
    print(
        f"{'kind':<10} {'5 x step':>12} {'step_many':>12} {'numpy path':>12} {'plain numpy':>12} "
        f"{'kernel/numpy':>13} {'kernel/plain':>13} {'vs HVAC':>8} {'first interval':>15}"
    )
    steps = n * intervals * (IV // DT)
    hvac_rate = None
    for name, make, arrays, baseline, start in kinds:
        first = first_interval(make(), start, weather)
        pop = make()
        state = None if arrays is None else arrays(pop)
        many = make()
        reference = make()
        reference.kernel = "numpy"
        seconds, energy = run_library(pop, start, weather, prices)
        ref_seconds, ref_energy = run_library(reference, start, weather, prices)
        rate, ref_rate = steps / seconds, steps / ref_seconds
        checks = [("numpy path", ref_energy)]
        many_rate, many_text = rate, f"{'-':>12}"  # a kind the simulator steps one by one
        if hasattr(many, "step_many"):
            many_seconds, many_energy = run_library(many, start, weather, prices, many=True)
            checks.append(("step_many", many_energy))
            many_rate = steps / many_seconds
            many_text = f"{many_rate:>12,.0f}"
        hvac_rate = many_rate if hvac_rate is None else hvac_rate
        plain, versus_plain = f"{'-':>12}", f"{'-':>13}"
        if baseline is not None and state is not None:
            plain_seconds, plain_energy = run_numpy(baseline, state, start, weather, prices)
            checks.append(("plain numpy", plain_energy))
            plain_rate = steps / plain_seconds
            plain, versus_plain = f"{plain_rate:>12,.0f}", f"{rate / plain_rate:>12.2f}x"
        for what, value in checks:
            if not np.isclose(energy, value, rtol=1e-6, atol=1e-6):
                raise SystemExit(f"{name}: {what} meters {value} kWh, kernels {energy} kWh")
        print(
            f"{name:<10} {rate:>12,.0f} {many_text} {ref_rate:>12,.0f} {plain} "
            f"{rate / ref_rate:>12.2f}x {versus_plain} {many_rate / hvac_rate:>7.2f}x "
            f"{first:>13.2f} s"
        )


if __name__ == "__main__":
    main()
