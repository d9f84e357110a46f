"""Fused numba kernels of the base-load population: the profiles' exact means (issue 17).

Each household's mean power over a span is its yearly energy times the share of the year's
energy its profile delivers in that span, read exactly off the cumulative profile (SimBench's
profiles, Meinecke et al., Energies 13(12):3290, 2020, piecewise constant over their steps; the
year repeats). :func:`mean_power` does it in one loop over the households, with the arithmetic
of :meth:`transactive.devices.base_load.BaseLoadPopulation._share_until` in the same order of
operations and no transcendental function, so the two agree to the last bit
(``tests/devices/test_base_load_kernels.py``); :func:`respond` reads each household's allocation
off its own curve (``BidCurves.power_at``) and what it draws beyond it.

Both cores (:func:`~transactive.devices._kernels.loop`) for large populations: the profile
lookups are scattered reads, bound by memory latency, and a second thread pays (bid + respond +
five steps of 10^6 households, interleaved runs on the project's 2-core machine: 138-143 M
device-steps/s on two threads against 49-55 M on one).

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.base_load`
imports this module only when a population first runs a kernel.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import inline, loop, power_at_row

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_power_at_row = inline(power_at_row)


@inline
def _share_until(
    t: float,
    offset_s: float,
    row: int,
    fraction: FloatArray,
    period_s: float,
    profile_step_s: float,
    n_steps: int,
) -> float:
    """Share of a year's energy one household has used from time 0 to ``t`` (cyclic)."""
    local = t + offset_s
    years = np.floor(local / period_s)
    pos = (local - years * period_s) / profile_step_s
    j = min(int(pos), n_steps - 1)
    frac = pos - j
    f0 = fraction[row, j]
    return float(years + f0 + frac * (fraction[row, j + 1] - f0))


@loop
def mean_power(
    start_s: float,
    duration_s: float,
    annual_energy_kwh: FloatArray,
    time_offset_s: FloatArray,
    profile_index: IntArray,
    fraction: FloatArray,
    period_s: float,
    profile_step_s: float,
    out_power_kw: FloatArray,
    out_energy_kwh: FloatArray,
    energy_dt_s: float,
) -> None:
    """Mean power over ``[start_s, start_s + duration_s)`` into ``out_power_kw``.

    With ``energy_dt_s > 0`` also the energy ``power × energy_dt_s / 3600`` into
    ``out_energy_kwh`` (a step's metered energy).
    """
    n_steps = fraction.shape[1] - 1
    end_s = start_s + duration_s
    for i in numba.prange(annual_energy_kwh.size):
        offset, row = time_offset_s[i], profile_index[i]
        share = _share_until(end_s, offset, row, fraction, period_s, profile_step_s, n_steps)
        share = share - _share_until(
            start_s, offset, row, fraction, period_s, profile_step_s, n_steps
        )
        power = annual_energy_kwh[i] * share * 3600.0 / duration_s
        out_power_kw[i] = power
        if energy_dt_s > 0:
            out_energy_kwh[i] = power * energy_dt_s / 3600.0


@loop
def respond(
    prices: FloatArray,
    powers: FloatArray,
    price: FloatArray,
    fill: FloatArray,
    out_drawn_kw: FloatArray,
    out_unallocated_kw: FloatArray,
) -> None:
    """The power drawn (the bid's block) and what it exceeds each allocation by (kW, >= 0)."""
    for i in numba.prange(out_drawn_kw.size):
        allocated = _power_at_row(prices, powers, i, price, fill)
        drawn = powers[i, 0]
        out_drawn_kw[i] = drawn
        out_unallocated_kw[i] = max(drawn - allocated, 0.0)
