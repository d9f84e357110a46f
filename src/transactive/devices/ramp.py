"""The ramp controller of the Olympic Peninsula demonstration (GridLAB-D ``controller.cpp``).

A thermostatic device bids its power as one block at a price set by how far its temperature is
from its setpoint, within ``mean ± k sigma`` of recent prices; the cleared price moves its
setpoint by the inverse rule (Hammerstrom et al., "Pacific Northwest GridWise Testbed
Demonstration Projects, Part I: Olympic Peninsula Project", PNNL-17167, 2007). Shared by the
HVAC and water-heater populations; the heat pump uses the block bids and response.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import _price_and_fill
from transactive.devices.base import PriceStats
from transactive.errors import Problems

__all__ = ["ramp_bid_price", "ramp_setpoint"]

FloatArray = npt.NDArray[np.float64]


def ramp_bid_price(
    temperature_c: FloatArray,
    setpoint_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    mean_per_kwh: float,
    std_per_kwh: float,
) -> FloatArray:
    """Unclipped ramp-controller bid price (GridLAB-D ``controller.cpp``, ramp mode).

    ``price = mean + direction k sigma (T - Tset) / |T_lim - Tset|`` with ``(k, T_lim)`` the
    high side ``(ramp_high, Tmax)`` above the setpoint and the low side ``(ramp_low, Tmin)`` below.
    ``direction`` is +1 for a device that cools (pays more when warmer), -1 for one that heats.
    """
    above = temperature_c > setpoint_c
    k = np.where(above, ramp_high, ramp_low)
    half = np.where(above, comfort_max_c - setpoint_c, setpoint_c - comfort_min_c)
    return np.asarray(
        mean_per_kwh + direction * (temperature_c - setpoint_c) * k * std_per_kwh / half,
        dtype=np.float64,
    )


def ramp_setpoint(
    clearing_price: FloatArray,
    setpoint_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    mean_per_kwh: float,
    std_per_kwh: float,
) -> FloatArray:
    """Thermostat setpoint for a cleared price: the inverse of :func:`ramp_bid_price`.

    ``Tset' = Tset + direction (p - mean) |T_lim - Tset| / (k sigma)``, clipped to
    ``[Tmin, Tmax]``; the side of the band is the side the shift points to. With ``sigma == 0``
    the setpoint goes to the band edge the price points to (``controller.cpp`` then keeps the
    base setpoint; the edge keeps the response the inverse of the bid, which is then ``mean``).
    """
    push = direction * (clearing_price - mean_per_kwh)
    up = push > 0
    k = np.where(up, ramp_high, ramp_low)
    half = np.where(up, comfort_max_c - setpoint_c, setpoint_c - comfort_min_c)
    if std_per_kwh > 0.0:
        shifted = setpoint_c + push * half / (k * std_per_kwh)
    else:
        shifted = setpoint_c + np.sign(push) * half
    return np.asarray(np.clip(shifted, comfort_min_c, comfort_max_c), dtype=np.float64)


def _check_price_stats(stats: PriceStats) -> None:
    problems = Problems(subject="price statistics")
    values = {
        "mean_per_kwh": stats.mean_per_kwh,
        "std_per_kwh": stats.std_per_kwh,
        "price_cap_per_kwh": stats.price_cap_per_kwh,
        "price_floor_per_kwh": stats.price_floor_per_kwh,
    }
    for name, value in values.items():
        if not np.isfinite(value):
            problems.add(name, f"must be a finite number, got {value}")
    problems.raise_if_any()
    if stats.std_per_kwh < 0:
        problems.add("std_per_kwh", f"must not be negative, got {stats.std_per_kwh}")
    if not stats.price_cap_per_kwh > stats.price_floor_per_kwh:
        problems.add("price_cap_per_kwh", "must exceed price_floor_per_kwh")
    problems.raise_if_any()


def _block_bids(price: FloatArray, power_kw: FloatArray) -> BidCurves:
    """One buying block per device (``from_steps`` layout) from arrays known to be valid."""
    prices = np.repeat(price[:, None], 2, axis=1)
    powers = np.stack([power_kw, np.zeros_like(power_kw)], axis=1)
    return BidCurves._trusted(prices, powers)


def _block_response(
    bid_price: FloatArray,
    bid_power_kw: FloatArray,
    clearing_price: float | npt.ArrayLike,
    marginal_fill: float | npt.ArrayLike,
    n: int,
) -> FloatArray:
    """Power read off block curves at a price: ``power_at(price, fill)`` of :func:`_block_bids`."""
    price, fill = _price_and_fill(clearing_price, marginal_fill, n)
    price_b = np.broadcast_to(price, (n,))
    fill_b = np.broadcast_to(fill, (n,))
    marginal = np.where(price_b == bid_price, fill_b * bid_power_kw, 0.0)
    return np.where(price_b < bid_price, bid_power_kw, marginal)


class _RampThermostats(Protocol):
    """What the Olympic Peninsula response reads of a thermostatic population."""

    _n: int
    _bid_price: FloatArray | None
    _bid_power_kw: FloatArray | None
    _bid_stats: PriceStats
    setpoint_c: FloatArray
    comfort_min_c: FloatArray
    comfort_max_c: FloatArray
    ramp_low: FloatArray
    ramp_high: FloatArray


def _ramp_response(
    pop: _RampThermostats,
    direction: FloatArray,
    clearing_price: float | npt.ArrayLike,
    marginal_fill: float | npt.ArrayLike,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """Each device's power on its block bid, its shifted setpoint, on/off state and duty.

    The ramp controller's response (GridLAB-D ``controller.cpp``), shared by the thermostatic
    kinds: the power is the device's own curve at the price (duty = fill at its bid price), and
    the setpoint moves by ``(p - mean) |T_lim - T_set| / (k sigma)`` within the comfort band.
    """
    if pop._bid_price is None or pop._bid_power_kw is None:
        problems = Problems(subject="market response")
        problems.add("respond", "call bid() before respond()")
        problems.raise_if_any()
    assert pop._bid_price is not None and pop._bid_power_kw is not None
    power = _block_response(
        pop._bid_price, pop._bid_power_kw, clearing_price, marginal_fill, pop._n
    )
    stats = pop._bid_stats
    price = np.broadcast_to(np.asarray(clearing_price, dtype=np.float64), (pop._n,))
    setpoint = ramp_setpoint(
        price,
        pop.setpoint_c,
        direction,
        pop.comfort_min_c,
        pop.comfort_max_c,
        pop.ramp_low,
        pop.ramp_high,
        stats.mean_per_kwh,
        stats.std_per_kwh,
    )
    on = power > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        duty = np.where(on, power / pop._bid_power_kw, 1.0)
    return power, setpoint, on, duty
