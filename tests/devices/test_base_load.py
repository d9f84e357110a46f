"""Base load population: SimBench profiles scaled by yearly energy, unresponsive bids, drawn
whatever the market says (rationing is visible, never silent)."""

from __future__ import annotations

import numpy as np
import pytest

from transactive.curves import BidCurves
from transactive.data import load_simbench_profiles
from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.errors import ValidationError
from transactive.market import ClearingType, Supply, clear
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
    load = BaseLoadPopulation.from_profiles(profiles, profile_index=[0], annual_energy_kwh=[3500.0])
    raw = profiles.values_pu[0]
    scale = 3500.0 / (raw.sum() * 0.25)  # kW per unit so that the year holds 3500 kWh
    metered = []
    for k in range(96):
        load.bid(STATS, MarketInterval(900 * k, 900), WEATHER)
        load.respond(0.5, 0.0)
        metered.append(float(load.step(900 * k, 900, WEATHER).power_kw[0]))
    np.testing.assert_allclose(metered, raw[:96] * scale, rtol=1e-9)


def test_step_length_does_not_change_the_energy() -> None:
    load = households(5)
    day = 100 * 86400
    e_fine = np.sum([load.step(day + 60 * k, 60, WEATHER).energy_kwh for k in range(1440)], axis=0)
    e_coarse = np.sum([load.step(day + 3600 * k, 3600, WEATHER).energy_kwh for k in range(24)], 0)
    np.testing.assert_allclose(e_fine, e_coarse, rtol=1e-9)


def test_time_offset_shifts_the_profile_and_the_year_repeats() -> None:
    load = households(1, time_offset_s=[3600.0])
    plain = households(1)
    assert load.mean_power_kw(0.0, 900.0)[0] == pytest.approx(plain.mean_power_kw(3600.0, 900.0)[0])
    assert plain.mean_power_kw(YEAR_S + 5000.0, 900.0)[0] == pytest.approx(
        plain.mean_power_kw(5000.0, 900.0)[0]
    )


def test_bids_are_unresponsive_blocks_at_the_cap_of_the_intervals_mean() -> None:
    load = households(3)
    interval = MarketInterval(7 * 3600, 300)
    curves = load.bid(STATS, interval, WEATHER)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    expected = load.mean_power_kw(7 * 3600.0, 300.0)
    np.testing.assert_allclose(curves.power_at(0.999), expected)
    np.testing.assert_allclose(curves.power_at(0.0), expected)
    assert np.all(curves.price_per_kwh == 1.0)
    assert curves.ids is not None and curves.ids.tolist() == ["load-0", "load-1", "load-2"]


def test_rationing_at_the_cap_does_not_shed_load_silently() -> None:
    """At a FAILURE clearing (supply short of the load at the cap) the market allocates each
    household a share of its block; the households draw their profile anyway and the gap is
    reported per household, summing to the market's shortage."""
    load = households(50)
    interval = MarketInterval(19 * 3600, 300)
    curves = load.bid(STATS, interval, WEATHER)
    demand = float(curves.power_at(0.0).sum())
    result = clear(
        curves, price_cap=1.0, supply=Supply(price_per_kwh=0.1, capacity_kw=0.6 * demand)
    )
    assert result.clearing_type is ClearingType.FAILURE and result.clearing_price == 1.0
    drawn = load.respond(result.clearing_price, result.marginal_fill)
    np.testing.assert_allclose(drawn, curves.power_at(0.0))  # the whole profile
    np.testing.assert_allclose(load.unallocated_kw, drawn - result.allocation_kw, atol=1e-12)
    assert load.unallocated_kw.sum() == pytest.approx(result.shortage_kw)
    metered = np.sum(
        [load.step(t, 60, WEATHER).energy_kwh for t in range(interval.start_s, interval.end_s, 60)],
        axis=0,
    )
    np.testing.assert_allclose(metered, drawn * 300 / 3600.0, rtol=1e-9)
    # Served in full, nothing is unallocated.
    load.respond(0.5, 0.0)
    assert np.all(load.unallocated_kw == 0.0)


def test_a_thousand_households_meter_their_bid_over_the_interval() -> None:
    load = BaseLoadPopulation.sample(1000, np.random.default_rng(3))
    for k in range(3):
        interval = MarketInterval(18 * 3600 + 300 * k, 300)
        curves = load.bid(STATS, interval, WEATHER)
        result = clear(curves, price_cap=1.0, supply=Supply(price_per_kwh=0.1, capacity_kw=np.inf))
        load.respond(result.clearing_price, result.marginal_fill)
        metered = np.sum(
            [
                load.step(t, 60, WEATHER).energy_kwh
                for t in range(interval.start_s, interval.end_s, 60)
            ],
            axis=0,
        )
        np.testing.assert_allclose(metered, result.allocation_kw * 300 / 3600.0, rtol=1e-9)


def test_empty_population_ids_and_bad_inputs() -> None:
    profiles = load_simbench_profiles(["H0-A"])
    empty = BaseLoadPopulation.from_profiles(profiles, profile_index=[], annual_energy_kwh=[])
    assert empty.n_devices == 0
    assert len(empty.bid(STATS, MarketInterval(0, 300), WEATHER)) == 0
    assert empty.respond(1.0, 0.5).shape == (0,)
    assert empty.step(0, 60, WEATHER).power_kw.shape == (0,)
    assert BaseLoadPopulation.sample(0, np.random.default_rng(0), profiles=profiles).n_devices == 0
    with pytest.raises(ValidationError) as info:
        BaseLoadPopulation.sample(-1, "seed", profiles=profiles)  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"n", "rng"}
    named = BaseLoadPopulation.from_profiles(
        profiles, profile_index=[0, 0], annual_energy_kwh=3000.0, ids=["flat-1", "flat-2"]
    )
    assert named.step(0, 60, WEATHER).ids.tolist() == ["flat-1", "flat-2"]  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="ids"):
        BaseLoadPopulation.from_profiles(
            profiles, profile_index=[0, 0], annual_energy_kwh=3000.0, ids=["a"]
        )
    with pytest.raises(ValidationError, match="temperature_c"):
        named.step(0, 60, WeatherSample(temperature_c=float("nan")))
    with pytest.raises(ValidationError, match="dt_s"):
        named.step(0, 0, WEATHER)
    named.bid(STATS, MarketInterval(0, 300), WEATHER)
    with pytest.raises(TypeError):
        named.respond(1.0)  # type: ignore[call-arg]


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
