"""Generalized prosumer (paper §3.2, Fig. 4): three model forms, one net curve, routed response."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import Population, PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.pv import PVPopulation
from transactive.errors import ValidationError
from transactive.market import clear
from transactive.prosumer.prosumer import Member, ModelForm, Prosumer
from transactive.weather import WeatherSample

CAP = 1.0
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=CAP)
NOON = WeatherSample(
    temperature_c=25.0,
    ghi_w_per_m2=850.0,
    dni_w_per_m2=800.0,
    dhi_w_per_m2=120.0,
    solar_zenith_deg=20.0,
    solar_azimuth_deg=180.0,
)
N = 12  # prosumers


def neighbourhood(seed: int = 0) -> Prosumer:
    rng = np.random.default_rng(seed)
    load = BaseLoadPopulation.sample(N, rng, time_s=180 * 86400.0 + 12 * 3600.0)
    pv = PVPopulation.sample(8, rng, curtailable_share=0.5)
    pv.set_forecast(NOON)
    battery = BatteryPopulation.sample(5, rng)
    ev = EVPopulation(
        arrival_s=0.0,
        departure_s=rng.uniform(1800.0, 7200.0, 6),
        energy_needed_kwh=rng.uniform(1.0, 8.0, 6),
        max_power_kw=7.4,
    )
    chp = CHPPopulation.sample(3, rng, fuel_price_per_kwh=0.015)
    return Prosumer(
        [
            Member(load, np.arange(N), controllable=False),
            Member(pv, rng.integers(0, N - 1, 8), controllable=False),
            Member(battery, np.array([0, 1, 2, 3, 3]), controllable=True),
            Member(ev, np.array([0, 4, 5, 6, 7, 7]), controllable=True),
            Member(chp, np.array([8, 9, 0]), controllable=True),
        ],
        n_prosumers=N + 1,  # the last prosumer has no device at all
    )


def probe_prices(*curves: BidCurves) -> np.ndarray:
    points = np.unique(np.concatenate([c.price_per_kwh.ravel() for c in curves]))
    mids = 0.5 * (points[1:] + points[:-1])
    return np.concatenate([points, mids, [-0.1, CAP + 0.1]])


def test_prosumer_batch_is_a_population_of_meters() -> None:
    p = neighbourhood()
    assert isinstance(p, Population)
    assert p.n_devices == N + 1


def test_three_model_forms_give_the_same_net_curve() -> None:
    p = neighbourhood()
    net = p.bid(STATS)
    models = {form: p.model(form) for form in ModelForm}
    assert len(models[ModelForm.PER_CLASS].parts) == 3
    assert len(models[ModelForm.CONTROLLABILITY].parts) == 2
    assert len(models[ModelForm.WHOLE].parts) == 1
    for price in probe_prices(net, *(m.net for m in models.values())):
        lo, hi = net.bounds_at(price)
        for m in models.values():
            lo_m, hi_m = m.net.bounds_at(price)
            np.testing.assert_allclose(lo_m, lo, atol=1e-9)
            np.testing.assert_allclose(hi_m, hi, atol=1e-9)
    # The last prosumer has nothing behind its meter: a zero curve in every form.
    assert np.all(net.power_kw[N] == 0.0)


def test_per_class_parts_have_the_right_signs_and_sum_to_the_devices() -> None:
    p = neighbourhood()
    p.bid(STATS)
    parts = p.model(ModelForm.PER_CLASS).parts
    assert np.all(parts["controllable_generation"].power_kw <= 0.0)
    assert np.all(parts["controllable_load"].power_kw >= 0.0)
    # At a low price the batteries charge and EVs take everything they can: load only.
    members = p.members
    battery_curves = members[2].population.bid(STATS)
    ev_curves = members[3].population.bid(STATS)
    load_at_zero = parts["controllable_load"].power_at(0.0).sum()
    expected = battery_curves.power_at(0.0).sum() + ev_curves.power_at(0.0).sum()
    expected += np.maximum(members[4].population.bid(STATS).power_at(0.0), 0.0).sum()
    assert load_at_zero == pytest.approx(expected)


def test_same_allocation_whatever_the_form() -> None:
    p = neighbourhood()
    p.bid(STATS)
    feeder = BidCurves.from_breakpoints([[0.0, CAP]], [[200.0, -200.0]])
    results = []
    for form in ModelForm:
        model = p.model(form)
        results.append(clear(BidCurves.concat([model.net, feeder]), price_cap=CAP))
    for r in results[1:]:
        assert r.clearing_price == pytest.approx(results[0].clearing_price, abs=1e-12)
        np.testing.assert_allclose(r.allocation_kw, results[0].allocation_kw, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(price=st.floats(0.0, CAP), fill=st.floats(0.0, 1.0), seed=st.integers(0, 50))
def test_device_powers_sum_to_the_prosumer_allocation(price, fill, seed) -> None:
    p = neighbourhood(seed)
    net = p.bid(STATS)
    total = p.respond(price, fill)
    np.testing.assert_allclose(total, net.power_at(price, fill), atol=1e-9)


def test_market_price_and_fill_routed_down_give_each_meter_its_allocation() -> None:
    p = neighbourhood(3)
    net = p.bid(STATS)
    # Scarce supply at the cap: demand at the cap is rationed, marginal fills are fractional.
    feeder = BidCurves.from_breakpoints([[0.05, 0.05]], [[0.0, -3.0]])
    result = clear(BidCurves.concat([net, feeder]), price_cap=CAP)
    total = p.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(total, result.allocation_kw[:-1], atol=1e-9)
    metered = p.step(300.0, NOON)
    # Under the forecast weather the metered power equals the response, device by device.
    np.testing.assert_allclose(metered.power_kw, total, atol=1e-9)


def test_locational_prices_one_per_prosumer() -> None:
    p = neighbourhood(5)
    net = p.bid(STATS)
    prices = np.linspace(0.0, CAP, N + 1)
    np.testing.assert_allclose(p.respond(prices, 0.3), net.power_at(prices, 0.3), atol=1e-9)


def test_energy_balance_over_a_day() -> None:
    p = neighbourhood(8)
    total = np.zeros(N + 1)
    by_devices = np.zeros(N + 1)
    for k in range(288):
        p.bid(STATS)
        p.respond(0.05 + 0.1 * (k % 2))
        result = p.step(300.0, NOON)
        total += result.energy_kwh
        np.testing.assert_allclose(result.energy_kwh, result.power_kw * 300.0 / 3600.0)
        by_devices += result.power_kw * 300.0 / 3600.0
    np.testing.assert_allclose(total, by_devices)
    assert total[N] == 0.0


def test_bad_meters_are_named() -> None:
    load = BaseLoadPopulation.sample(3, np.random.default_rng(0))
    with pytest.raises(ValidationError) as info:
        Prosumer(
            [
                Member(load, np.array([0, -1, 2]), controllable=False),
                Member(load, np.array([0, 1]), controllable=False),
                Member(load, np.array([0, 5, 7]), controllable=False),
            ],
            n_prosumers=4,
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("members[0].meter", (1,)) in found
    assert ("members[2].meter", (1, 2)) in found
    assert any(p.field == "members[1].meter" for p in info.value.problems)
    with pytest.raises(ValidationError, match="no bid"):
        Prosumer([Member(load, np.array([0, 0, 1]), controllable=False)]).respond(0.1)
