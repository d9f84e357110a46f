# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""Battery kernels: the fused numba bid, respond and step give the numpy reference's numbers
exactly.

Two populations built alike, one per implementation, run the same intervals in lockstep: prices
at random, on the curves' breakpoints (where the marginal fill decides: a battery there is
between charging and idle, or idle and discharging) and one per battery, steps that straddle
the responded interval's edges or lie outside it, batteries driven to both edges of their SOC
band. Every curve, response, metered step and state is compared with ``==`` (bit for bit but
the sign of a zero).
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
from transactive.devices import _battery_kernels
from transactive.devices.base import MarketInterval
from transactive.devices.battery import BatteryPopulation
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)


def pair(n: int, seed: int) -> tuple[BatteryPopulation, BatteryPopulation]:
    return kernel_pair(lambda: BatteryPopulation.sample(n, np.random.default_rng(seed)))


@pytest.mark.parametrize("seed", [1, 2])
def test_kernels_match_the_reference_bit_for_bit(seed: int) -> None:
    fast, reference = pair(3000, seed)
    rng = np.random.default_rng(seed)
    n = fast.n_devices
    got, want = fast.step(0, 60, WEATHER), reference.step(0, 60, WEATHER)  # before any bid
    assert_same(got.energy_kwh, want.energy_kwh, "idle step")
    charged = discharged = 0.0
    length = 1800  # long intervals: the SOC reaches its band's edges
    for k in range(16):
        s = 3600 + k * length
        interval = MarketInterval(s, length)
        curves = fast.bid(STATS, interval, WEATHER)
        expected = reference.bid(STATS, interval, WEATHER)
        assert_same(curves.price_per_kwh, expected.price_per_kwh, f"interval {k} prices")
        assert_same(curves.power_kw, expected.power_kw, f"interval {k} powers")
        price: float | np.ndarray
        fill: float | np.ndarray
        match k % 4:
            case 0:  # low: most charge
                price, fill = float(rng.uniform(0.0, 0.05)), 0.5
            case 1:  # on some battery's buying or selling block
                row, col = rng.integers(n), 2 * rng.integers(2)
                price, fill = float(expected.price_per_kwh[row, col]), 0.61
            case 2:  # high: most discharge, one fill per battery
                price, fill = float(rng.uniform(0.2, 0.3)), rng.uniform(0.0, 1.0, n)
            case _:  # one price per battery, some on their own breakpoints
                price = rng.uniform(0.0, 0.3, n)
                on_point = rng.random(n) < 0.3
                price[on_point] = expected.price_per_kwh[on_point, 3]
                fill = 0.2
        assert_same(fast.respond(price, fill), reference.respond(price, fill), f"respond {k}")
        t = s - 90  # the first step starts before the interval, the last runs past its end
        while t < s + length + 90:
            got, want = fast.step(t, 180, WEATHER), reference.step(t, 180, WEATHER)
            assert_same(got.energy_kwh, want.energy_kwh, f"step {t} energy")
            assert_same(got.power_kw, want.power_kw, f"step {t} power")
            assert_same(fast.soc_pu, reference.soc_pu, f"step {t} soc")
            charged += float(np.clip(got.energy_kwh, 0.0, None).sum())
            discharged -= float(np.clip(got.energy_kwh, None, 0.0).sum())
            t += 180
    assert charged > 100.0 and discharged > 100.0  # both directions ran
    assert np.any(fast.soc_pu == fast.soc_max_pu) or np.any(fast.soc_pu == fast.soc_min_pu)
    assert _battery_kernels.step.signatures  # the kernel ran (not the reference twice)
    assert _battery_kernels.bid.signatures and _battery_kernels.respond.signatures


def test_a_replaced_state_attribute() -> None:
    for value in replaced_states(40, 0.5):
        fast, reference = pair(40, 3)
        fast.soc_pu = reference.soc_pu = value
        interval = MarketInterval(0, 300)
        assert assert_one_interval_alike(fast, reference, STATS, interval, WEATHER, 0.0) > 0.0


def test_empty_population_and_kernel_choice() -> None:
    empty = BatteryPopulation(capacity_kwh=[], charge_power_max_kw=[], discharge_power_max_kw=[])
    assert_empty_population_works(empty, STATS, WEATHER, 4)
    assert_kernel_refused(
        lambda kernel: BatteryPopulation(
            capacity_kwh=1.0, charge_power_max_kw=1.0, discharge_power_max_kw=1.0, kernel=kernel
        ),
        empty,
    )
