# numba dispatchers (.serial, .parallel, .signatures) are typed as the plain functions they wrap
# mypy: disable-error-code="attr-defined"
"""PV kernels: the fused PVWatts chain agrees with pvlib's within 1e-12 of each DC rating.

The kernel computes the angle of incidence from the systems' and the sun's cosines and sines
(``cos(γ_s - γ)`` expanded) instead of pvlib's three transcendental functions per system-step,
so the two differ by rounding only. Checked over a TMY summer and winter day (every sun position
from sunrise to sunset, dark samples included), odd geometries (flat, vertical, facing north, the
sun behind the plane) and through bid, respond and step in lockstep with the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.devices._kernel_pairs import assert_empty_population_works, assert_kernel_refused
from tests.devices._kernel_pairs import pair as kernel_pair
from transactive.data import load_tmy3
from transactive.devices import _pv_kernels
from transactive.devices.base import MarketInterval, PriceStats
from transactive.devices.pv import PVPopulation
from transactive.weather import WeatherSample

STATS = PriceStats(
    mean_per_kwh=0.05, std_per_kwh=0.05, price_cap_per_kwh=1.0, price_floor_per_kwh=-0.5
)
#: The stated tolerance, relative to each system's DC rating (kW).
RTOL_OF_RATING = 1e-12


def pair(n: int, seed: int, **kw: object) -> tuple[PVPopulation, PVPopulation]:
    return kernel_pair(
        lambda: PVPopulation.sample(n, np.random.default_rng(seed), **kw)  # type: ignore[arg-type]
    )


def assert_close(got: np.ndarray, want: np.ndarray, rating_kw: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, what
    worst = float(np.max(np.abs(got - want) / rating_kw, initial=0.0))
    assert worst <= RTOL_OF_RATING, f"{what}: off by {worst:.2e} of the rating"


@pytest.mark.parametrize("day", [172, 355])
def test_output_agrees_with_pvlib_over_a_tmy_day(day: int) -> None:
    fast, reference = pair(400, day)
    samples = load_tmy3(step_s=600, start_day=day, days=1)
    lit = 0
    for k in range(len(samples)):
        weather = samples[k]
        got = fast.available_power_kw(weather)
        want = reference.available_power_kw(weather)
        assert_close(got, want, fast.dc_capacity_kw, f"sample {k}")
        assert np.array_equal(got == 0.0, want == 0.0), f"sample {k}: zeros differ"
        lit += int(np.count_nonzero(want > 0.0))
    assert lit > 400 * 30  # hours of daylight, not only nights
    assert _pv_kernels.ac_power.serial.signatures  # the kernel ran (not the reference twice)


def test_odd_geometries_and_the_sun_behind_the_plane() -> None:
    tilt = np.array([0.0, 90.0, 90.0, 45.0, 60.0, 0.0, 30.0, 89.0])
    azimuth = np.array([180.0, 0.0, 180.0, 360.0, 90.0, 0.0, 270.0, 200.0])
    kw = {"dc_capacity_kw": np.full(8, 5.0), "tilt_deg": tilt, "azimuth_deg": azimuth}
    fast, reference = PVPopulation(**kw), PVPopulation(**kw, kernel="numpy")  # type: ignore[arg-type]
    behind = 0
    for zenith in (0.0, 10.0, 45.0, 80.0, 89.9, 90.0, 95.0):
        for sun_azimuth in (0.0, 45.0, 135.0, 180.0, 300.0, 359.0):
            weather = WeatherSample(
                temperature_c=25.0, ghi_w_per_m2=700.0, dni_w_per_m2=800.0,
                dhi_w_per_m2=120.0, solar_zenith_deg=zenith, solar_azimuth_deg=sun_azimuth,
            )  # fmt: skip
            got, want = fast.available_power_kw(weather), reference.available_power_kw(weather)
            assert_close(got, want, fast.dc_capacity_kw, f"zenith {zenith}, azimuth {sun_azimuth}")
            cos_incidence = np.cos(np.radians(tilt)) * np.cos(np.radians(zenith)) + np.sin(
                np.radians(tilt)
            ) * np.sin(np.radians(zenith)) * np.cos(np.radians(sun_azimuth - azimuth))
            behind += int(np.count_nonzero((cos_incidence < 0) & (zenith < 90.0)))
    assert behind > 10  # beam from behind the plane: only diffuse light, as pvlib's


def test_bid_respond_step_agree_with_the_reference() -> None:
    fast, reference = pair(2000, 7, curtailable_share=0.5)
    rating = fast.dc_capacity_kw
    samples = load_tmy3(step_s=60, start_day=172, days=1)
    rng = np.random.default_rng(7)
    for k in range(8):
        s = 10 * 3600 + k * 300
        forecast = samples[s // 60]
        interval = MarketInterval(s, 300)
        curves = fast.bid(STATS, interval, forecast)
        expected = reference.bid(STATS, interval, forecast)
        assert np.array_equal(curves.price_per_kwh, expected.price_per_kwh)
        assert_close(curves.power_kw[:, 1], expected.power_kw[:, 1], rating, f"bid {k}")
        price: float | np.ndarray
        match k % 4:
            case 0:  # every system sells in full
                price, fill = 0.1, 0.5
            case 1:  # negative: the curtailable systems sell nothing
                price, fill = -0.2, 0.5
            case 2:  # on the sellers' block at zero: the fill shares it
                price, fill = 0.0, 0.3
            case _:  # one price per system
                price, fill = rng.uniform(-0.5, 0.5, 2000), 0.7
        got, want = fast.respond(price, fill), reference.respond(price, fill)
        assert_close(got, want, rating, f"respond {k}")
        assert np.array_equal(np.isinf(fast._limit_kw), np.isinf(reference._limit_kw))
        for t in range(s - 30, s + 330, 60):  # straddling the interval's edges
            weather = samples[t // 60 + 1]  # not the forecast: the dispatch limit may bind
            a, b = fast.step(t, 60, weather), reference.step(t, 60, weather)
            assert_close(a.energy_kwh * 60.0, b.energy_kwh * 60.0, rating, f"step {t} energy")
            assert_close(a.power_kw, b.power_kw, rating, f"step {t} power")
    assert _pv_kernels.step.serial.signatures and _pv_kernels.respond.serial.signatures


def test_the_parallel_kernel_and_kernel_choice() -> None:
    fast, reference = pair(520_000, 9)
    noon = load_tmy3(step_s=3600, start_day=100, days=1)[12]
    assert_close(
        fast.available_power_kw(noon), reference.available_power_kw(noon),
        fast.dc_capacity_kw, "parallel",
    )  # fmt: skip
    assert _pv_kernels.ac_power.parallel.signatures
    empty = PVPopulation(dc_capacity_kw=[])
    assert empty.available_power_kw(noon).shape == (0,)
    assert_empty_population_works(empty, STATS, noon, 2)
    assert_kernel_refused(lambda kernel: PVPopulation(dc_capacity_kw=1.0, kernel=kernel), empty)
