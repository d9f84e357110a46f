"""Fused numba kernels of the micro-CHP population: interval bid, response and step (issue 17).

Each kernel is one loop over the units doing, per unit, the arithmetic of the numpy reference in
:mod:`transactive.devices.chp`, in the same order of operations and with no transcendental
function, so the two agree to the last bit (``tests/devices/test_chp_kernels.py``):

- :func:`bid`: the degree-day heat demand (ASHRAE Handbook—Fundamentals) of the forecast, the
  must-run and available electric output that keep the heat buffer in its band over the
  interval, and the PowerMatcher micro-CHP agent's curve (Kok, PhD thesis, VU Amsterdam, 2013):
  must-run at the floor, a ramp from the marginal cost ``fuel / η_e`` to ``+kσ`` above it;
- :func:`respond`: each unit's setpoint off its own curve (``BidCurves.power_at``);
- :func:`step`: the output capped by the buffer's room over the step, the buffer balance
  ``E' = E + (P / σ - q) h`` (the backup boiler covering ``E' < 0``), fuel and backup accounts.

One core (:func:`~transactive.devices._kernels.jit`): the loops are bound by memory bandwidth
(see :mod:`transactive.devices._kernels`).

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.chp` imports this
module only when a population first runs a kernel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from transactive.devices import _battery_kernels
from transactive.devices._kernels import inline, jit

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]


@inline
def _heat_and_room(
    hours: float, outdoor_c: float, p_max: float, sigma: float, buf: float, ua: float,
    balance_c: float, hot_water: float, soc: float,
) -> tuple[float, float, float]:  # fmt: skip
    """One unit's heat demand (kW), buffer energy (kWh) and available output over ``hours``.

    Degree-day heat demand ``q = UA max(T_balance - T_out, 0) + q_hot_water``; the available
    output ``σ`` times the buffer's room plus the heat used, at most ``p_max``
    (``CHPPopulation.output_limits``).
    """
    heat = ua * max(balance_c - outdoor_c, 0.0) + hot_water
    energy = soc * buf
    room_heat = (buf - energy) / hours + heat
    return heat, energy, min(max(sigma * room_heat, 0.0), p_max)


@jit
def bid(
    duration_s: float,
    outdoor_c: float,
    std_per_kwh: float,
    cap: float,
    floor: float,
    electric_power_max_kw: FloatArray,
    electric_to_thermal_ratio: FloatArray,
    electric_efficiency: FloatArray,
    fuel_price_per_kwh: FloatArray,
    buffer_capacity_kwh: FloatArray,
    soc_min_pu: FloatArray,
    ua_kw_per_c: FloatArray,
    balance_temperature_c: FloatArray,
    hot_water_kw: FloatArray,
    band_k: FloatArray,
    buffer_soc_pu: FloatArray,
    out_heat_kw: FloatArray,
    prices: FloatArray,
    powers: FloatArray,
) -> None:
    """The seller curves (N, 4) and the expected heat demand ``out_heat_kw`` of the forecast."""
    hours = duration_s / 3600.0
    for i in range(buffer_capacity_kwh.size):
        heat, energy, available = _heat_and_room(
            hours, outdoor_c, electric_power_max_kw[i], electric_to_thermal_ratio[i],
            buffer_capacity_kwh[i], ua_kw_per_c[i], balance_temperature_c[i], hot_water_kw[i],
            buffer_soc_pu[i],
        )  # fmt: skip
        need_heat = (soc_min_pu[i] * buffer_capacity_kwh[i] - energy) / hours + heat
        must = min(max(electric_to_thermal_ratio[i] * need_heat, 0.0), available)
        cost = fuel_price_per_kwh[i] / electric_efficiency[i]
        top = available if cost <= cap else must  # never willing beyond the cap
        out_heat_kw[i] = heat
        prices[i, 0] = floor
        prices[i, 1] = floor
        prices[i, 2] = min(max(cost, floor), cap)
        prices[i, 3] = min(max(cost + band_k[i] * std_per_kwh, floor), cap)
        powers[i, 0] = 0.0
        powers[i, 1] = -must
        powers[i, 2] = -must
        powers[i, 3] = -top


#: Each unit's power at its price (one, or one per unit) off its own curve: the battery's loop of
#: :func:`~transactive.devices._kernels.power_at_row`, the same for any curves.
respond = _battery_kernels.respond


@jit
def step(
    share: float,
    dt_s: float,
    outdoor_c: float,
    electric_power_max_kw: FloatArray,
    electric_to_thermal_ratio: FloatArray,
    electric_efficiency: FloatArray,
    buffer_capacity_kwh: FloatArray,
    ua_kw_per_c: FloatArray,
    balance_temperature_c: FloatArray,
    hot_water_kw: FloatArray,
    setpoint_kw: FloatArray,
    buffer_soc_pu: FloatArray,
    backup_heat_kwh: FloatArray,
    fuel_kwh: FloatArray,
    out_soc_pu: FloatArray,
    out_backup_heat_kwh: FloatArray,
    out_fuel_kwh: FloatArray,
    out_energy_kwh: FloatArray,
    out_power_kw: FloatArray,
) -> None:
    """One step at ``share`` (inside seconds / dt) of the setpoint, within the buffer's room."""
    hours = dt_s / 3600.0
    for i in range(buffer_capacity_kwh.size):
        heat, energy, available = _heat_and_room(
            hours, outdoor_c, electric_power_max_kw[i], electric_to_thermal_ratio[i],
            buffer_capacity_kwh[i], ua_kw_per_c[i], balance_temperature_c[i], hot_water_kw[i],
            buffer_soc_pu[i],
        )  # fmt: skip
        electric = min(max(-setpoint_kw[i] * share, 0.0), available)
        # E' = E + (P / σ - q) h; the backup boiler covers E' < 0.
        energy = energy + (electric / electric_to_thermal_ratio[i] - heat) * hours
        backup = max(-energy, 0.0)
        buf = buffer_capacity_kwh[i]
        energy = min(max(energy, 0.0), buf)
        out_soc_pu[i] = energy / buf
        out_backup_heat_kwh[i] = backup_heat_kwh[i] + backup
        out_fuel_kwh[i] = fuel_kwh[i] + electric * hours / electric_efficiency[i]
        out_power_kw[i] = -electric
        out_energy_kwh[i] = -electric * hours
