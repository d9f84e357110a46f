# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""Micro-CHP kernels: the fused numba bid, respond and step give the numpy reference's numbers
exactly.

Two populations built alike, one per implementation, run the same intervals in lockstep under a
changing outdoor temperature (the heat demand the buffer serves): prices at random, on the
curves' breakpoints (the must-run block at the floor, the ramp's ends) and one per unit, steps
that straddle the responded interval's edges or lie outside it, buffers driven full and empty
(the backup boiler). Every curve, response, metered step and account is compared with ``==``
(bit for bit but the sign of a zero).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.devices._kernel_pairs import (
    STATS,
    assert_empty_population_works,
    assert_kernel_refused,
    assert_one_interval_alike,
    assert_same,
    replaced_states,
)
from tests.devices._kernel_pairs import pair as kernel_pair
from transactive.devices import _chp_kernels
from transactive.devices.base import MarketInterval
from transactive.devices.chp import CHPPopulation
from transactive.weather import WeatherSample


def pair(n: int, seed: int) -> tuple[CHPPopulation, CHPPopulation]:
    return kernel_pair(
        lambda: CHPPopulation.sample(n, np.random.default_rng(seed), fuel_price_per_kwh=0.02)
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_kernels_match_the_reference_bit_for_bit(seed: int) -> None:
    fast, reference = pair(3000, seed)
    rng = np.random.default_rng(seed)
    n = fast.n_devices
    cold = WeatherSample(temperature_c=-5.0)
    got, want = fast.step(0, 60, cold), reference.step(0, 60, cold)  # before any bid
    assert_same(got.energy_kwh, want.energy_kwh, "idle step")
    produced, full = 0.0, 0
    length = 1800
    for k in range(16):
        s = 3600 + k * length
        interval = MarketInterval(s, length)
        forecast = WeatherSample(temperature_c=float(rng.uniform(-10.0, 20.0)))
        curves = fast.bid(STATS, interval, forecast)
        expected = reference.bid(STATS, interval, forecast)
        assert_same(curves.price_per_kwh, expected.price_per_kwh, f"interval {k} prices")
        assert_same(curves.power_kw, expected.power_kw, f"interval {k} powers")
        assert_same(fast.expected_heat_kw, reference.expected_heat_kw, f"interval {k} heat")
        price: float | np.ndarray
        fill: float | np.ndarray
        match k % 4:
            case 0:  # between breakpoints
                price, fill = float(rng.uniform(0.0, 0.3)), 0.5
            case 1:  # on some unit's ramp end, or the floor (every must-run block)
                col = rng.integers(1, 4)
                price = float(expected.price_per_kwh[rng.integers(n), col])
                fill = 0.43
            case 2:  # the floor, one fill per unit
                price, fill = 0.0, rng.uniform(0.0, 1.0, n)
            case _:  # one price per unit
                price, fill = rng.uniform(0.0, 0.4, n), 0.9
        assert_same(fast.respond(price, fill), reference.respond(price, fill), f"respond {k}")
        t = s - 90
        while t < s + length + 90:
            weather = WeatherSample(temperature_c=float(rng.uniform(-10.0, 25.0)))
            got, want = fast.step(t, 180, weather), reference.step(t, 180, weather)
            assert_same(got.energy_kwh, want.energy_kwh, f"step {t} energy")
            assert_same(got.power_kw, want.power_kw, f"step {t} power")
            assert_same(fast.buffer_soc_pu, reference.buffer_soc_pu, f"step {t} soc")
            assert_same(fast.backup_heat_kwh, reference.backup_heat_kwh, f"step {t} backup")
            assert_same(fast.fuel_kwh, reference.fuel_kwh, f"step {t} fuel")
            produced -= float(got.energy_kwh.sum())
            full += int(np.count_nonzero(fast.buffer_soc_pu >= 1.0 - 1e-9))
            t += 180
    assert produced > 100.0 and float(fast.backup_heat_kwh.sum()) > 0.0
    assert full > 0  # full buffers capped the output
    assert _chp_kernels.step.signatures  # the kernel ran (not the reference twice)
    assert _chp_kernels.bid.signatures and _chp_kernels.respond.signatures


def test_a_replaced_state_attribute() -> None:
    interval, forecast = MarketInterval(0, 300), WeatherSample(temperature_c=0.0)
    for value in replaced_states(40, 0.3):
        fast, reference = pair(40, 3)
        fast.buffer_soc_pu = reference.buffer_soc_pu = value
        assert assert_one_interval_alike(fast, reference, STATS, interval, forecast, 0.5) < 0.0


def test_empty_population_and_kernel_choice() -> None:
    empty = CHPPopulation(
        electric_power_max_kw=[], electric_to_thermal_ratio=[], electric_efficiency=[],
        fuel_price_per_kwh=[], buffer_capacity_kwh=[],
    )  # fmt: skip
    assert_empty_population_works(empty, STATS, WeatherSample(temperature_c=5.0), 4)
    assert_kernel_refused(
        lambda kernel: CHPPopulation(
            electric_power_max_kw=1.0, electric_to_thermal_ratio=0.2, electric_efficiency=0.15,
            fuel_price_per_kwh=0.02, buffer_capacity_kwh=5.0, kernel=kernel,
        ),
        empty,
    )  # fmt: skip
