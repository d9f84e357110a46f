# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""EV kernels: the fused numba bid, respond and step give the numpy reference's numbers exactly.

Two populations built alike, one per implementation, run the same intervals in lockstep: prices
at random, on the curves' breakpoints (where the marginal fill decides) and one per EV, steps
that straddle the responded interval's edges or lie outside it, EVs arriving and leaving inside
a step. Every curve, response, metered step and state is compared with ``==`` (bit for bit but
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
from transactive.devices import _ev_kernels
from transactive.devices.base import MarketInterval
from transactive.devices.ev import EVPopulation
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)


def pair(n: int, seed: int) -> tuple[EVPopulation, EVPopulation]:
    return kernel_pair(lambda: EVPopulation.sample(n, np.random.default_rng(seed)))


def run_intervals(fast: EVPopulation, reference: EVPopulation, seed: int) -> float:
    """Drive both through a night of intervals; returns the energy metered (to check it ran)."""
    rng = np.random.default_rng(seed)
    n = fast.n_devices
    metered = 0.0
    start, length = 16 * 3600, 900
    for k in range(14):
        s = start + k * length
        interval = MarketInterval(s, length)
        curves = fast.bid(STATS, interval, WEATHER)
        expected = reference.bid(STATS, interval, WEATHER)
        assert_same(curves.price_per_kwh, expected.price_per_kwh, f"interval {k} prices")
        assert_same(curves.power_kw, expected.power_kw, f"interval {k} powers")
        assert curves.ids is not None and expected.ids is not None
        assert np.array_equal(curves.ids, expected.ids)
        price: float | np.ndarray
        fill: float | np.ndarray
        match k % 4:
            case 0:  # between breakpoints
                price, fill = float(rng.uniform(0.0, 0.3)), 0.5
            case 1:  # on some EV's flexible block: the fill shares it
                price, fill = float(expected.price_per_kwh[rng.integers(n), 0]), 0.37
            case 2:  # the cap (every must-run block), one fill per EV
                price, fill = STATS.price_cap_per_kwh, rng.uniform(0.0, 1.0, n)
            case _:  # locational prices: one per EV, some on their own breakpoints
                price = rng.uniform(0.0, 0.3, n)
                on_point = rng.random(n) < 0.3
                price[on_point] = expected.price_per_kwh[on_point, 0]
                fill = 0.8
        assert_same(fast.respond(price, fill), reference.respond(price, fill), f"respond {k}")
        # 70 s steps: the last one runs past the interval's end (its tail is not charged).
        t = s
        while t < s + length + 70:
            got, want = fast.step(t, 70, WEATHER), reference.step(t, 70, WEATHER)
            assert_same(got.energy_kwh, want.energy_kwh, f"step {t} energy")
            assert_same(got.power_kw, want.power_kw, f"step {t} power")
            assert_same(fast.delivered_kwh, reference.delivered_kwh, f"step {t} delivered")
            metered += float(got.energy_kwh.sum())
            t += 70
    return metered


@pytest.mark.parametrize("seed", [1, 2])
def test_kernels_match_the_reference_bit_for_bit(seed: int) -> None:
    fast, reference = pair(3000, seed)
    # Before any bid: a step outside every responded interval charges nothing.
    got, want = fast.step(0, 60, WEATHER), reference.step(0, 60, WEATHER)
    assert_same(got.energy_kwh, want.energy_kwh, "idle step")
    assert run_intervals(fast, reference, seed) > 100.0
    assert _ev_kernels.step.signatures  # the kernel ran (not the reference twice)
    assert _ev_kernels.bid.signatures and _ev_kernels.respond.signatures


def test_a_replaced_state_attribute() -> None:
    for value in replaced_states(50, 0.0):
        fast, reference = pair(50, 3)
        fast.delivered_kwh = reference.delivered_kwh = value
        interval = MarketInterval(20 * 3600, 300)
        assert assert_one_interval_alike(fast, reference, STATS, interval, WEATHER, 0.0) > 0.0


def test_empty_population_and_kernel_choice() -> None:
    empty = EVPopulation(arrival_s=[], departure_s=[], energy_needed_kwh=[], max_power_kw=[])
    assert_empty_population_works(empty, STATS, WEATHER, 4)
    assert_kernel_refused(
        lambda kernel: EVPopulation(
            arrival_s=[0.0], departure_s=[10.0], energy_needed_kwh=[1.0], max_power_kw=[1.0],
            kernel=kernel,
        ),
        empty,
    )  # fmt: skip
