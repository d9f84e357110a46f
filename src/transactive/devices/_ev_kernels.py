"""Fused numba kernels of the EV population: interval bid, response and charging step (issue 17).

Each kernel is one loop over the chargers doing, per EV, the
arithmetic of the numpy reference in :mod:`transactive.devices.ev`, in the same order of
operations and with no transcendental function, so the two agree to the last bit
(``tests/devices/test_ev_kernels.py``):

- :func:`bid`: the urgency bid of PowerMatcher's EV agent (Kok, PhD thesis, VU Amsterdam, 2013),
  urgency ``u = g / (P τ)`` from laxity (Nakahira et al., ACM e-Energy 2017), the must-run block
  at the cap and the flexible block at ``p_lo + u (p_hi - p_lo)`` within ``mean ± kσ``
  (Hammerstrom et al., PNNL-17167, 2007): the curve's four breakpoints per EV;
- :func:`respond`: each EV's power off its own curve (``BidCurves.power_at``) and the constant
  rate ``power × duration / plugged seconds`` that meters it over the interval;
- :func:`step`: the plugged seconds of the step inside the responded interval, the grid energy
  ``min(rate × on / 3600, remaining / η)`` and the delivered energy.

One core (:func:`~transactive.devices._kernels.jit`): the loops are bound by memory bandwidth
(see :mod:`transactive.devices._kernels`).

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.ev` imports this
module only when a population first runs a kernel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import inline, jit, power_at_row

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]

_power_at_row = inline(power_at_row)


@jit
def bid(
    start_s: float,
    end_s: float,
    mean_per_kwh: float,
    std_per_kwh: float,
    cap: float,
    floor: float,
    arrival_s: FloatArray,
    departure_s: FloatArray,
    energy_needed_kwh: FloatArray,
    delivered_kwh: FloatArray,
    max_power_kw: FloatArray,
    efficiency: FloatArray,
    band_k: FloatArray,
    prices: FloatArray,
    powers: FloatArray,
) -> None:
    """The urgency bids for ``[start_s, end_s)`` into ``prices`` and ``powers`` (N, 4)."""
    duration = end_s - start_s
    to_kw = 3600.0 / duration
    for i in range(arrival_s.size):
        arr, dep, p_max = arrival_s[i], departure_s[i], max_power_kw[i]
        plugged = max(min(end_s, dep) - max(start_s, arr), 0.0)  # _overlap_s
        remaining = max(energy_needed_kwh[i] - delivered_kwh[i], 0.0)
        grid_need = remaining / efficiency[i] if plugged > 0 else 0.0
        from_s = max(start_s, arr)
        time_left = max(dep - from_s, 0.0)
        reach_now = p_max * plugged / 3600.0
        reach_after = p_max * max(dep - end_s, 0.0) / 3600.0
        flexible = min(grid_need, reach_now)
        # Must-run: what cannot wait for later intervals at full power (zero laxity, Kok 2013).
        must = min(max(grid_need - reach_after, 0.0), flexible)
        # Urgency u = g / (P τ): zero laxity at 1 (Nakahira et al. 2017).
        urgency = grid_need / (p_max * time_left / 3600.0) if time_left > 0 else 0.0
        urgency = min(max(urgency, 0.0), 1.0)
        band = band_k[i] * std_per_kwh
        p_lo = min(max(mean_per_kwh - band, floor), cap)
        p_hi = min(max(mean_per_kwh + band, floor), cap)
        p_flex = p_lo + urgency * (p_hi - p_lo)
        prices[i, 0] = p_flex
        prices[i, 1] = p_flex
        prices[i, 2] = cap
        prices[i, 3] = cap
        powers[i, 0] = flexible * to_kw
        powers[i, 1] = must * to_kw
        powers[i, 2] = must * to_kw
        powers[i, 3] = 0.0


@jit
def respond(
    prices: FloatArray,
    powers: FloatArray,
    price: FloatArray,
    fill: FloatArray,
    start_s: float,
    end_s: float,
    arrival_s: FloatArray,
    departure_s: FloatArray,
    power_kw: FloatArray,
    rate_kw: FloatArray,
) -> None:
    """Each EV's power at its price (``price``, ``fill``: one value, or one per EV) and rate."""
    duration = end_s - start_s
    for i in range(arrival_s.size):
        power = _power_at_row(prices, powers, i, price, fill)
        plugged = max(min(end_s, departure_s[i]) - max(start_s, arrival_s[i]), 0.0)
        power_kw[i] = power
        rate_kw[i] = power * duration / plugged if plugged > 0 else 0.0


@jit
def step(
    active: bool,
    lo_s: float,
    hi_s: float,
    dt_s: float,
    arrival_s: FloatArray,
    departure_s: FloatArray,
    energy_needed_kwh: FloatArray,
    efficiency: FloatArray,
    rate_kw: FloatArray,
    delivered_kwh: FloatArray,
    out_delivered_kwh: FloatArray,
    out_energy_kwh: FloatArray,
    out_power_kw: FloatArray,
) -> None:
    """Charge over ``[lo_s, hi_s)``, the step's part inside the responded interval (``active``).

    ``delivered_kwh`` is read, the new delivered energy written to ``out_delivered_kwh``.
    """
    for i in range(arrival_s.size):
        need, eff, done = energy_needed_kwh[i], efficiency[i], delivered_kwh[i]
        charging = 0.0
        if active:
            charging = max(min(hi_s, departure_s[i]) - max(lo_s, arrival_s[i]), 0.0)
        remaining = max(need - done, 0.0)
        grid_kwh = min(rate_kw[i] * charging / 3600.0, remaining / eff)
        out_delivered_kwh[i] = min(done + grid_kwh * eff, need)
        out_energy_kwh[i] = grid_kwh
        out_power_kw[i] = grid_kwh * 3600.0 / dt_s
