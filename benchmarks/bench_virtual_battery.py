"""Virtual batteries of HVAC houses: how closely stepped on/off houses follow them.

For 2,000 sampled houses (cooling at 32 °C, heating at -3 °C), settled for three hours under
their thermostats, a power signal inside the aggregate battery is dispatched every minute by
the priority stack (``track_power``) on the exact ETP houses, for two kinds of battery:

- ``first_order``: Hao et al.'s one-node reduction (capacity ``C Δ/η`` on the slow mode, full
  power range) with proportional disaggregation: the construction the project had before;
- ``sufficient``: the two-mode bound of ``transactive.devices.tcl_battery`` (limits that hold
  for the air temperature) with the same disaggregation.

Signals, each at 90 % of the battery's power limits and kept inside its energy limits: discharge
to the lower energy limit and hold there (``hold_low``), the same upward (``hold_high``),
bang-bang between the energy limits (``bang``), and a random piecewise-constant signal
(``random``). Printed per run: RMS and peak of (delivered - target) as % of the power range,
the energy error as % of the signal's deviation energy, and the worst excursion out of any
house's band (K). Then the horizon view: each house's ``best_response`` to peak and random
prices over 16 quarter hours, dispatched per house (``follow_schedule``) and in aggregate
(``track_power``), with the error of each period's aggregate energy.

    python benchmarks/bench_virtual_battery.py            # 2,000 houses, 12 hours per signal
    python benchmarks/bench_virtual_battery.py --quick    # 500 houses
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from transactive.devices.base import Horizon
from transactive.devices.hvac import COOLING, HEATING, HvacPopulation
from transactive.prosumer.virtual_battery import (
    VirtualBattery,
    follow_schedule,
    track_power,
    virtual_battery_of,
)
from transactive.weather import WeatherSample

STEP_S = 60
WEATHER = {COOLING: WeatherSample(32.0, ghi_w_per_m2=200.0), HEATING: WeatherSample(-3.0)}


def signal(vb: VirtualBattery, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Deviations at 90 % of the power limits, each step kept inside the energy limits."""
    a, cap = vb.dissipation_per_s, vb.energy_capacity_kwh
    decay = np.exp(-a * STEP_S)
    gain = -np.expm1(-a * STEP_S) / a / 3600.0
    lo, hi = 0.9 * vb.power_min_kw, 0.9 * vb.power_max_kw
    u = np.empty(n)
    x, going_down = 0.0, True
    for k in range(n):  # a recursion in time
        u_lo = max(lo, (-cap - decay * x) / gain)
        u_hi = min(hi, (cap - decay * x) / gain)
        if kind == "hold_low":
            v = u_lo
        elif kind == "hold_high":
            v = u_hi
        elif kind == "bang":
            if going_down and x <= -0.999 * cap:
                going_down = False
            elif not going_down and x >= 0.999 * cap:
                going_down = True
            v = u_lo if going_down else u_hi
        else:
            v = rng.uniform(u_lo, u_hi) if k % 10 == 0 else min(max(u[k - 1], u_lo), u_hi)
        u[k] = v
        x = decay * x + gain * v
    return u


def settled(n: int, mode: int, seed: int) -> tuple[HvacPopulation, int]:
    """Houses after three hours under their thermostats, and the time reached (s)."""
    houses = HvacPopulation.sample(n, np.random.default_rng(seed), mode=mode)
    t = 0
    for _ in range(180):
        houses.step(t, STEP_S, WEATHER[mode])
        t += STEP_S
    return houses, t


def band_excursion_k(houses: HvacPopulation) -> float:
    """Worst distance of any house's air outside its comfort band (0 when all are inside)."""
    t = houses.air_temperature_c
    out = np.maximum(houses.comfort_min_c - t, t - houses.comfort_max_c)
    return float(max(out.max(initial=0.0), 0.0))


def tracking(n: int, mode: int, kind: str, sig: str, minutes: int, seed: int) -> dict[str, float]:
    """Dispatch one signal with the priority stack and measure the tracking."""
    weather = WEATHER[mode]
    houses, t = settled(n, mode, seed)
    vb = virtual_battery_of(houses, weather, kind=kind)  # type: ignore[arg-type]
    u = signal(vb, sig, minutes, np.random.default_rng(seed + 1))
    errors = np.empty(minutes)
    worst = 0.0
    for k in range(minutes):
        target = vb.baseline_kw + u[k]
        track_power(houses, target, weather)
        errors[k] = houses.step(t, STEP_S, weather).power_kw.sum() - target
        t += STEP_S
        worst = max(worst, band_excursion_k(houses))
    span = vb.power_max_kw - vb.power_min_kw
    return {
        "rms": 100 * float(np.sqrt(np.mean(errors**2))) / span,
        "peak": 100 * float(np.abs(errors).max()) / span,
        "energy": 100 * float(errors.sum() / np.abs(u).sum()),
        "out": worst,
    }


def horizon_view(n: int, mode: int, seed: int) -> None:
    """Best responses dispatched per house and in aggregate."""
    weather = WEATHER[mode]
    houses, t = settled(n, mode, seed)
    periods, per = 16, 15
    horizon = Horizon(t, per * STEP_S, periods)
    samples = [weather] * periods
    hours = np.arange(periods)
    prices = {
        "peak": np.where((hours >= 6) & (hours < 10), 0.5, 0.1),
        "random": np.random.default_rng(seed).uniform(0.05, 0.5, periods),
    }
    for name, price in prices.items():
        t0 = time.perf_counter()
        best = houses.best_response(price, horizon, samples)
        solve_s = time.perf_counter() - t0
        span = float(
            (best.flexibility.power_max_kw - best.flexibility.power_min_kw).sum(axis=1).mean()
        )
        plan = best.power_kw.sum(axis=1)
        for how in ("per house", "aggregate"):
            h = copy.deepcopy(houses)
            now, worst = t, 0.0
            drawn = np.zeros(periods)
            for p in range(periods):
                delivered = np.zeros(n)
                for m in range(per):
                    if how == "per house":
                        follow_schedule(
                            h,
                            best.power_kw[p],
                            delivered_kwh=delivered,
                            elapsed_s=m * STEP_S,
                            step_s=STEP_S,
                            weather=weather,
                        )
                    else:
                        track_power(h, plan[p], weather)
                    delivered += h.step(now, STEP_S, weather).energy_kwh
                    now += STEP_S
                    worst = max(worst, band_excursion_k(h))
                drawn[p] = delivered.sum() * 3600.0 / (per * STEP_S)
            err = drawn - plan
            print(
                f"  {name:6s} {how:9s}: period energy error rms "
                f"{100 * np.sqrt(np.mean(err**2)) / span:5.2f} %, peak "
                f"{100 * np.abs(err).max() / span:5.2f} % of the power range; "
                f"out of band {worst:.3g} K; solve {solve_s:.2f} s"
            )


def main() -> None:
    """Print the tracking table and the horizon-view dispatch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 houses")
    args = parser.parse_args()
    n = 500 if args.quick else 2000
    minutes = 720
    for mode, name in ((COOLING, "cooling"), (HEATING, "heating")):
        print(f"{n} {name} houses, {minutes} one-minute steps per signal (priority stack)")
        print("  battery      signal     rms %   peak %  energy %  out of band K")
        for kind in ("first_order", "sufficient"):
            for sig in ("hold_low", "hold_high", "bang", "random"):
                r = tracking(n, mode, kind, sig, minutes, seed=5)
                print(
                    f"  {kind:12s} {sig:9s} {r['rms']:6.2f}  {r['peak']:7.2f}  "
                    f"{r['energy']:8.2f}  {r['out']:.3g}"
                )
        print(f"  best responses over 16 quarter hours, {n} houses")
        horizon_view(n, mode, seed=3)


if __name__ == "__main__":
    main()
