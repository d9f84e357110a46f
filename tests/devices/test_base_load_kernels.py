# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""Base-load kernels: the fused numba means, bid, respond and step give the numpy reference's
numbers exactly.

Two populations built alike on SimBench's profiles, one per implementation, are read over spans
that start and end inside a profile step, cross the year's end (the profile repeats) and lie
before time 0 for households whose offset is negative; the market's response includes
rationing (fills below one at the cap). Every value is compared with ``==``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.devices._kernel_pairs import (
    STATS,
    assert_empty_population_works,
    assert_kernel_refused,
    assert_same,
)
from tests.devices._kernel_pairs import pair as kernel_pair
from transactive.data import load_simbench_profiles
from transactive.devices import _base_load_kernels
from transactive.devices.base import MarketInterval
from transactive.devices.base_load import BaseLoadPopulation
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=10.0)
YEAR_S = 366 * 86400  # SimBench's profiles are of 2016


def pair(n: int, seed: int) -> tuple[BaseLoadPopulation, BaseLoadPopulation]:
    profiles = load_simbench_profiles()
    return kernel_pair(
        lambda: BaseLoadPopulation.sample(n, np.random.default_rng(seed), profiles=profiles)
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_kernels_match_the_reference_bit_for_bit(seed: int) -> None:
    fast, reference = pair(3000, seed)
    rng = np.random.default_rng(seed)
    n = fast.n_devices
    starts = [0, 7, 450, 86_400 * 100 + 13, YEAR_S - 1000, YEAR_S - 3, 3 * YEAR_S + 901]
    for start in starts:
        for duration in (1, 60, 437, 900, 3600, 2 * YEAR_S):
            assert_same(
                fast.mean_power_kw(float(start), float(duration)),
                reference.mean_power_kw(float(start), float(duration)),
                f"mean over [{start}, +{duration})",
            )
    for k, start in enumerate([300, YEAR_S - 600, 172 * 86_400 + 18 * 3600 + 17]):
        interval = MarketInterval(start, 900)
        curves = fast.bid(STATS, interval, WEATHER)
        expected = reference.bid(STATS, interval, WEATHER)
        assert_same(curves.price_per_kwh, expected.price_per_kwh, f"interval {k} prices")
        assert_same(curves.power_kw, expected.power_kw, f"interval {k} powers")
        # at the cap every block is marginal: the fill rations (one fill per household, or one)
        fill: float | np.ndarray = rng.uniform(0.0, 1.0, n) if k % 2 else 0.3
        assert_same(fast.respond(1.0, fill), reference.respond(1.0, fill), f"respond {k}")
        assert_same(fast.unallocated_kw, reference.unallocated_kw, f"unallocated {k}")
        assert float(fast.unallocated_kw.sum()) > 0.0
        assert_same(fast.respond(0.5, 0.0), reference.respond(0.5, 0.0), f"served {k}")
        for t in range(start - 70, start + 900, 70):
            got, want = fast.step(t, 70, WEATHER), reference.step(t, 70, WEATHER)
            assert_same(got.energy_kwh, want.energy_kwh, f"step {t} energy")
            assert_same(got.power_kw, want.power_kw, f"step {t} power")
    assert _base_load_kernels.mean_power.serial.signatures  # the kernel ran
    assert _base_load_kernels.respond.serial.signatures


def test_the_parallel_kernel_gives_the_same_numbers() -> None:
    """Above ``PARALLEL_MIN_ELEMENTS`` the loop runs on every core: the same arithmetic."""
    fast, reference = pair(520_000, 5)
    got, want = (
        fast.step(86_400 * 40 + 33, 60, WEATHER),
        reference.step(86_400 * 40 + 33, 60, WEATHER),
    )
    assert_same(got.energy_kwh, want.energy_kwh, "parallel step")
    assert _base_load_kernels.mean_power.parallel.signatures


def test_empty_population_and_kernel_choice() -> None:
    profiles = load_simbench_profiles()
    empty = BaseLoadPopulation.from_profiles(profiles, profile_index=[], annual_energy_kwh=[])
    assert_empty_population_works(empty, STATS, WEATHER, 2)
    assert_kernel_refused(
        lambda kernel: BaseLoadPopulation(
            profiles_pu=[[1.0, 2.0]], profile_step_s=900.0, profile_index=[0],
            annual_energy_kwh=[1.0], kernel=kernel,
        ),
        empty,
    )  # fmt: skip
