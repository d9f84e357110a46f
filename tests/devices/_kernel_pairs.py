"""What the kernel tests share (issue 17): twin populations, exact comparison, the kernel choice.

Each ``test_<kind>_kernels.py`` builds two populations alike, one on the fused numba kernels
(``kernel="numba"``, the default) and one on the numpy reference (``kernel="numpy"``), drives
them in lockstep and compares what they return and hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from transactive.devices.base import MarketInterval, PriceStats
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

P = TypeVar("P")

#: The market's price statistics the bids of most kinds' tests are made for.
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)


def pair(make: Callable[[], P]) -> tuple[P, P]:
    """Two populations from ``make``: the first on the kernels (its default), the second on the
    numpy reference."""
    fast, reference = make(), make()
    assert fast.kernel == "numba"  # type: ignore[attr-defined]
    reference.kernel = "numpy"  # type: ignore[attr-defined]
    return fast, reference


def assert_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """``a == b`` everywhere (bit for bit but the sign of a zero), shapes included."""
    assert a.shape == b.shape, what
    assert np.array_equal(a, b), f"{what}: {np.count_nonzero(a != b)} values differ"


def assert_kernel_refused(build: Callable[[str], Any], population: Any) -> None:
    """A ``kernel`` that is neither ``"numba"`` nor ``"numpy"`` is refused, naming the field.

    By the constructor (``build(kernel)`` makes a population of the kind) and by the attribute
    of ``population``, which keeps its kernel.
    """
    before = population.kernel
    for bad in ("fortran", "numpy ", None):
        with pytest.raises(ValidationError) as constructed:
            build(bad)  # type: ignore[arg-type]
        assert [p.field for p in constructed.value.problems] == ["kernel"]
        with pytest.raises(ValidationError) as assigned:
            population.kernel = bad
        assert [p.field for p in assigned.value.problems] == ["kernel"]
    assert population.kernel == before


def assert_one_interval_alike(
    fast: Any,
    reference: Any,
    stats: PriceStats,
    interval: MarketInterval,
    weather: WeatherSample,
    price: float,
) -> float:
    """Both bid for ``interval``, respond at ``price`` (fill 0) and step its first minute: the
    same curves and metered energies bit for bit. Returns the energy metered (kWh)."""
    assert_same(
        fast.bid(stats, interval, weather).power_kw,
        reference.bid(stats, interval, weather).power_kw,
        "bid",
    )
    assert_same(fast.respond(price, 0.0), reference.respond(price, 0.0), "respond")
    got = fast.step(interval.start_s, 60, weather)
    want = reference.step(interval.start_s, 60, weather)
    assert_same(got.energy_kwh, want.energy_kwh, "step")
    return float(got.energy_kwh.sum())


def replaced_states(n: int, value: float) -> list[Any]:
    """A state attribute as a caller may replace it: a list (which the kernels read as it is)
    and a float32 array (which they do not: the reference path runs)."""
    return [[value] * n, np.full(n, value, dtype=np.float32)]


def assert_empty_population_works(
    empty: Any, stats: PriceStats, weather: WeatherSample, points: int
) -> None:
    """A population of no devices bids ``(0, points)`` curves, responds and steps to nothing."""
    assert empty.bid(stats, MarketInterval(0, 300), weather).power_kw.shape == (0, points)
    assert empty.respond(0.1, 0.5).shape == (0,)
    assert empty.step(0, 60, weather).energy_kwh.shape == (0,)
