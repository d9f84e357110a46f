"""Fused numba kernels of the battery population: interval bid, response and step (issue 17).

Each kernel is one loop over the batteries doing, per battery, the arithmetic of the numpy
reference in :mod:`transactive.devices.battery`, in the same order of operations and with no
transcendental function, so the two agree to the last bit
(``tests/devices/test_battery_kernels.py``):

- :func:`bid`: the power limits over the interval (the energy-reservoir model: SOC band,
  ratings, one-way efficiencies) and the price-band arbitrage of the GridLAB-D / TESP battery
  controllers on the Olympic Peninsula bands (Hammerstrom et al., PNNL-17167, 2007), the selling
  price raised to ``buy / (η_c η_d)``: the curve's four breakpoints per battery;
- :func:`respond`: each battery's setpoint off its own curve (``BidCurves.power_at``);
- :func:`step`: the setpoint clipped to the limits over the step's part inside the responded
  interval, and ``soc' = soc + (η_c p⁺ - p⁻ / η_d) Δt / C`` kept in its band.

One core (:func:`~transactive.devices._kernels.jit`): the loops are bound by memory bandwidth
(see :mod:`transactive.devices._kernels`).

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.battery` imports
this module only when a population first runs a kernel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import inline, jit, power_at_row

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]

_power_at_row = inline(power_at_row)


@inline
def _limits(
    hours: float, soc: float, c_kwh: float, p_c: float, p_d: float, eta_c: float, eta_d: float,
    lo: float, hi: float,
) -> tuple[float, float]:  # fmt: skip
    """One battery's most charge and discharge (kW) for ``hours`` (``power_limits``).

    SOC ``soc`` in ``[lo, hi]`` of ``c_kwh``, power ratings ``p_c``, ``p_d``, efficiencies
    ``eta_c``, ``eta_d``.
    """
    room = max(hi - soc, 0.0) * c_kwh
    avail = max(soc - lo, 0.0) * c_kwh
    return min(p_c, room / (eta_c * hours)), min(p_d, avail * eta_d / hours)


@jit
def bid(
    duration_s: float,
    mean_per_kwh: float,
    std_per_kwh: float,
    cap: float,
    floor: float,
    capacity_kwh: FloatArray,
    charge_power_max_kw: FloatArray,
    discharge_power_max_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    soc_min_pu: FloatArray,
    soc_max_pu: FloatArray,
    band_k: FloatArray,
    soc_pu: FloatArray,
    prices: FloatArray,
    powers: FloatArray,
) -> None:
    """Buy block at ``mean - kσ``, sell block at ``max(mean + kσ, buy / η_rt)`` (N, 4)."""
    hours = duration_s / 3600.0
    for i in range(capacity_kwh.size):
        charge, discharge = _limits(
            hours, soc_pu[i], capacity_kwh[i], charge_power_max_kw[i], discharge_power_max_kw[i],
            charge_efficiency[i], discharge_efficiency[i], soc_min_pu[i], soc_max_pu[i],
        )  # fmt: skip
        band = band_k[i] * std_per_kwh
        p_buy = mean_per_kwh - band
        # A round trip bought at p_buy must sell at p_buy / η_rt or more to break even.
        p_sell = max(mean_per_kwh + band, p_buy / (charge_efficiency[i] * discharge_efficiency[i]))
        p_buy = min(max(p_buy, floor), cap)
        p_sell = min(max(p_sell, floor), cap)
        prices[i, 0] = p_buy
        prices[i, 1] = p_buy
        prices[i, 2] = p_sell
        prices[i, 3] = p_sell
        powers[i, 0] = charge
        powers[i, 1] = 0.0
        powers[i, 2] = 0.0
        powers[i, 3] = -discharge


@jit
def respond(
    prices: FloatArray, powers: FloatArray, price: FloatArray, fill: FloatArray, out: FloatArray
) -> None:
    """Each battery's power at its price (``price``, ``fill``: one value, or one per battery)."""
    for i in range(out.size):
        out[i] = _power_at_row(prices, powers, i, price, fill)


@jit
def step(
    active_s: float,
    dt_s: float,
    capacity_kwh: FloatArray,
    charge_power_max_kw: FloatArray,
    discharge_power_max_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    soc_min_pu: FloatArray,
    soc_max_pu: FloatArray,
    setpoint_kw: FloatArray,
    soc_pu: FloatArray,
    out_soc_pu: FloatArray,
    out_energy_kwh: FloatArray,
    out_power_kw: FloatArray,
) -> None:
    """Run at the setpoint for the ``active_s`` seconds of the step inside the interval."""
    hours = active_s / 3600.0
    for i in range(capacity_kwh.size):
        soc = soc_pu[i]
        power = 0.0
        if active_s > 0:
            charge, discharge = _limits(
                hours, soc, capacity_kwh[i], charge_power_max_kw[i], discharge_power_max_kw[i],
                charge_efficiency[i], discharge_efficiency[i], soc_min_pu[i], soc_max_pu[i],
            )  # fmt: skip
            power = min(max(setpoint_kw[i], -discharge), charge)
        stored = power * charge_efficiency[i] if power >= 0 else power / discharge_efficiency[i]
        out_soc_pu[i] = min(
            max(soc + stored * hours / capacity_kwh[i], soc_min_pu[i]), soc_max_pu[i]
        )
        energy = power * hours
        out_energy_kwh[i] = energy
        out_power_kw[i] = energy * 3600.0 / dt_s
