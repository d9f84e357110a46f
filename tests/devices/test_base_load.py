"""Base load population: SimBench profiles scaled by yearly energy, unresponsive bids."""

from __future__ import annotations

import numpy as np
import pytest

from transactive.curves import BidCurves
from transactive.data import load_simbench_profiles
from transactive.devices.base import Population, PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=10.0)
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
YEAR_S = 366 * 86400.0  # SimBench's profiles are of 2016


def households(n: int = 4, **kw: object) -> BaseLoadPopulation:
    profiles = load_simbench_profiles()
    return BaseLoadPopulation.from_profiles(
        profiles,
        profile_index=np.arange(n) % len(profiles.names),
        annual_energy_kwh=np.linspace(2000.0, 5000.0, n),
        **kw,  # type: ignore[arg-type]
    )


def test_is_a_population() -> None:
    assert isinstance(households(), Population)


def test_yearly_energy_equals_the_households_annual_energy() -> None:
    load = households(6)
    np.testing.assert_allclose(
        load.mean_power_kw(0.0, YEAR_S) * YEAR_S / 3600.0, load.annual_energy_kwh, rtol=1e-12
    )


def test_a_day_follows_the_simbench_profile_scaled_by_energy() -> None:
    profiles = load_simbench_profiles(["H0-A"])
    load = BaseLoadPopulation.from_profiles(
        profiles, profile_index=[0], annual_energy_kwh=[3500.0], interval_s=900.0
    )
    raw = profiles.values_pu[0]
    scale = 3500.0 / (raw.sum() * 0.25)  # kW per unit so that the year holds 3500 kWh
    metered = []
    for _ in range(96):
        load.bid(STATS)
        load.respond(0.5)
        metered.append(float(load.step(900.0, WEATHER).power_kw[0]))
    np.testing.assert_allclose(metered, raw[:96] * scale, rtol=1e-9)


def test_step_length_does_not_change_the_energy() -> None:
    fine = households(5, time_s=100 * 86400.0)
    coarse = households(5, time_s=100 * 86400.0)
    e_fine = sum(fine.step(60.0, WEATHER).energy_kwh for _ in range(24 * 60))
    e_coarse = sum(coarse.step(3600.0, WEATHER).energy_kwh for _ in range(24))
    np.testing.assert_allclose(e_fine, e_coarse, rtol=1e-9)
    assert fine.time_s == coarse.time_s


def test_time_offset_shifts_the_profile_and_the_year_repeats() -> None:
    load = households(1, time_offset_s=[3600.0])
    plain = households(1)
    assert load.mean_power_kw(0.0, 900.0)[0] == pytest.approx(plain.mean_power_kw(3600.0, 900.0)[0])
    assert plain.mean_power_kw(YEAR_S + 5000.0, 900.0)[0] == pytest.approx(
        plain.mean_power_kw(5000.0, 900.0)[0]
    )


def test_bids_are_unresponsive_blocks_at_the_cap_and_rationing_sheds_load() -> None:
    load = households(3)
    curves = load.bid(STATS)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    expected = load.mean_power_kw(0.0, 300.0)
    np.testing.assert_allclose(curves.power_at(0.999), expected)
    np.testing.assert_allclose(curves.power_at(0.0), expected)
    assert np.all(curves.price_per_kwh == 1.0)
    # The market rations demand at the cap: half served.
    power = load.respond(1.0, 0.5)
    np.testing.assert_allclose(power, 0.5 * expected)
    np.testing.assert_allclose(load.step(300.0, WEATHER).power_kw, power)


def test_sample_uses_household_profiles_and_lognormal_energy() -> None:
    load = BaseLoadPopulation.sample(2000, np.random.default_rng(0))
    assert load.n_devices == 2000
    assert 3300.0 < load.annual_energy_kwh.mean() < 3700.0
    assert set(np.unique(load.profile_index)) == set(range(6))


def test_bad_parameters_name_every_offending_device() -> None:
    profiles = np.ones((2, 96))
    profiles[1, 5] = np.nan
    with pytest.raises(ValidationError) as info:
        BaseLoadPopulation(
            profiles_pu=profiles,
            profile_step_s=900.0,
            profile_index=[0, 2, 1, -1],
            annual_energy_kwh=[1000.0, -5.0, 1000.0, 1000.0],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("profile_index", (1, 3)) in found
    assert ("annual_energy_kwh", (1,)) in found
    assert ("profiles_pu", (1,)) in found
