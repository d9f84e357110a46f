"""Generalized prosumer (paper §3.2, Fig. 4): three model forms, one net curve, routed response."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.hvac import HvacPopulation
from transactive.devices.pv import PVPopulation
from transactive.devices.water_heater import WaterHeaterPopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
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
T0 = 180 * 86400 + 12 * 3600  # noon of day 180 (seconds from the run's start, the profiles')
IV = 300
INTERVAL = MarketInterval(T0, IV)


def neighbourhood(seed: int = 0) -> Prosumer:
    rng = np.random.default_rng(seed)
    load = BaseLoadPopulation.sample(N, rng)
    pv = PVPopulation.sample(8, rng, curtailable_share=0.5)
    battery = BatteryPopulation.sample(5, rng)
    ev = EVPopulation(
        arrival_s=T0,
        departure_s=T0 + rng.uniform(1800.0, 7200.0, 6),
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
    net = p.bid(STATS, INTERVAL, NOON)
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
    p.bid(STATS, INTERVAL, NOON)
    parts = p.model(ModelForm.PER_CLASS).parts
    assert np.all(parts["controllable_generation"].power_kw <= 0.0)
    assert np.all(parts["controllable_load"].power_kw >= 0.0)
    # At a low price the batteries charge and EVs take everything they can: load only.
    members = p.members
    battery_curves = members[2].population.bid(STATS, INTERVAL, NOON)
    ev_curves = members[3].population.bid(STATS, INTERVAL, NOON)
    load_at_zero = parts["controllable_load"].power_at(0.0).sum()
    expected = battery_curves.power_at(0.0).sum() + ev_curves.power_at(0.0).sum()
    expected += np.maximum(
        members[4].population.bid(STATS, INTERVAL, NOON).power_at(0.0), 0.0
    ).sum()
    assert load_at_zero == pytest.approx(expected)


def test_same_allocation_whatever_the_form() -> None:
    p = neighbourhood()
    p.bid(STATS, INTERVAL, NOON)
    feeder = BidCurves.from_breakpoints([[0.0, CAP]], [[200.0, -200.0]]).with_ids(["feeder"])
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
    net = p.bid(STATS, INTERVAL, NOON)
    total = p.respond(price, fill)
    np.testing.assert_allclose(total - p.unallocated_kw, net.power_at(price, fill), atol=1e-9)
    if price < CAP:  # below the cap nobody is rationed: the devices draw their allocation
        np.testing.assert_allclose(total, net.power_at(price, fill), atol=1e-9)
        assert np.all(p.unallocated_kw == 0.0)


def test_market_price_and_fill_routed_down_give_each_meter_its_allocation() -> None:
    p = neighbourhood(3)
    net = p.bid(STATS, INTERVAL, NOON)
    feeder = BidCurves.from_breakpoints([[0.05, 0.05]], [[0.0, -3.0]]).with_ids(["feeder"])
    result = clear(BidCurves.concat([net, feeder]), price_cap=CAP)
    total = p.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(total, result.allocation_kw[:-1], atol=1e-9)
    metered = np.zeros(N + 1)
    for t in range(T0, T0 + IV, 60):
        step = p.step(t, 60, NOON)
        metered += step.energy_kwh
    assert step.ids is not None and step.ids.tolist()[-1] == f"meter-{N}"
    # Under the forecast weather the metered interval energy equals the allocation, per meter.
    np.testing.assert_allclose(metered, total * IV / 3600.0, rtol=1e-9, atol=1e-9)


def test_load_rationed_at_the_cap_is_drawn_and_reported_per_meter() -> None:
    rng = np.random.default_rng(4)
    load = BaseLoadPopulation.sample(6, rng)
    ev = EVPopulation(
        arrival_s=T0 - 3600, departure_s=T0 + 600, energy_needed_kwh=5.0, max_power_kw=7.4
    )  # nearly due: all of its need is must-run at the cap
    p = Prosumer(
        [
            Member(load, np.arange(6), controllable=False),
            Member(ev, np.array([0]), controllable=True),
        ]
    )
    net = p.bid(STATS, INTERVAL, NOON)
    demand = float(net.power_at(CAP - 1e-9).sum())
    supply = Supply(price_per_kwh=0.1, capacity_kw=0.5 * demand)
    result = clear(net, price_cap=CAP, supply=supply)
    assert result.clearing_price == CAP and result.shortage_kw > 0
    total = p.respond(result.clearing_price, result.marginal_fill)
    np.testing.assert_allclose(total, result.allocation_kw + p.unallocated_kw, atol=1e-9)
    # The households draw their profile; the EV takes only what it was allotted.
    np.testing.assert_allclose(p.unallocated_kw, load.unallocated_kw, atol=1e-9)
    # Pro rata rationing at the cap: the households' share of the shortage is their share of
    # the blocks at the cap; the EV's share stays unserved.
    households_kw = float(p.device_curves[0].power_at(0.0).sum())
    ev_kw = float(p.device_curves[1].power_at(CAP - 1e-9).sum())
    assert p.unallocated_kw.sum() == pytest.approx(
        result.shortage_kw * households_kw / (households_kw + ev_kw)
    )
    metered = np.sum([p.step(t, 60, NOON).energy_kwh for t in range(T0, T0 + IV, 60)], axis=0)
    np.testing.assert_allclose(metered, total * IV / 3600.0, rtol=1e-9)


def test_locational_prices_one_per_prosumer() -> None:
    p = neighbourhood(5)
    net = p.bid(STATS, INTERVAL, NOON)
    prices = np.linspace(0.0, CAP, N + 1)
    total = p.respond(prices, 0.3)
    np.testing.assert_allclose(total - p.unallocated_kw, net.power_at(prices, 0.3), atol=1e-9)


def test_energy_balance_over_a_day() -> None:
    p = neighbourhood(8)
    total = np.zeros(N + 1)
    by_devices = np.zeros(N + 1)
    for k in range(288):
        p.bid(STATS, MarketInterval(T0 + IV * k, IV), NOON)
        p.respond(0.05 + 0.1 * (k % 2), 0.0)
        result = p.step(T0 + IV * k, IV, NOON)
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
        Prosumer([Member(load, np.array([0, 0, 1]), controllable=False)]).respond(0.1, 0.0)


def test_net_curves_carry_meter_ids_and_device_curves_keep_device_ids() -> None:
    rng = np.random.default_rng(1)
    load = BaseLoadPopulation.sample(3, rng)
    battery = BatteryPopulation.sample(2, rng, ids=["bat-a", "bat-b"])
    p = Prosumer(
        [
            Member(load, np.array([0, 1, 2]), controllable=False),
            Member(battery, np.array([0, 2]), controllable=True),
        ],
        ids=["house-1", "house-2", "house-3"],
    )
    net = p.bid(STATS, INTERVAL, NOON)
    assert net.ids is not None and net.ids.tolist() == ["house-1", "house-2", "house-3"]
    for part in p.model(ModelForm.PER_CLASS).parts.values():
        assert part.ids is not None and part.ids.tolist() == net.ids.tolist()
    assert p.device_curves[1].ids is not None
    assert p.device_curves[1].ids.tolist() == ["bat-a", "bat-b"]
    result = clear(net, price_cap=CAP, supply=Supply(price_per_kwh=0.1, capacity_kw=np.inf))
    assert set(result.allocation_by_id()) == {"house-1", "house-2", "house-3"}
    with pytest.raises(ValidationError, match="ids"):
        Prosumer([Member(load, np.array([0, 1, 2]), controllable=False)], ids=["a", "a", "b"])


def test_an_empty_population_among_the_members_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    load = BaseLoadPopulation.sample(3, rng)
    empty_ev = EVPopulation(arrival_s=[], departure_s=[], energy_needed_kwh=[], max_power_kw=[])
    with_empty = Prosumer(
        [
            Member(load, np.array([0, 1, 2]), controllable=False),
            Member(empty_ev, [], controllable=True),
        ]
    )
    plain = Prosumer([Member(load, np.array([0, 1, 2]), controllable=False)])
    a = with_empty.bid(STATS, INTERVAL, NOON)
    b = plain.bid(STATS, INTERVAL, NOON)
    for form in ModelForm:
        np.testing.assert_allclose(
            with_empty.model(form).net.power_at(0.5), plain.model(form).net.power_at(0.5)
        )
    np.testing.assert_allclose(a.power_at(0.2), b.power_at(0.2))
    np.testing.assert_allclose(with_empty.respond(0.2, 0.0), plain.respond(0.2, 0.0))
    np.testing.assert_allclose(
        with_empty.step(T0, 60, NOON).energy_kwh, plain.step(T0, 60, NOON).energy_kwh
    )


def test_thermostatic_kinds_behind_the_meters_through_the_same_protocol() -> None:
    """HVAC and water heaters next to base load: the prosumer routes the same verbs, and the
    metered interval energy of 200 homes is within 3 % of the allocation."""
    rng = np.random.default_rng(7)
    n = 200
    members = [
        Member(HvacPopulation.sample(n, rng), np.arange(n), controllable=True),
        Member(WaterHeaterPopulation.sample(n, rng), np.arange(n), controllable=True),
        Member(BaseLoadPopulation.sample(n, rng), np.arange(n), controllable=False),
    ]
    p = Prosumer(members)
    hot = WeatherSample(temperature_c=32.0)
    start = 172 * 86400 + 15 * 3600
    net = p.bid(STATS, MarketInterval(start, IV), hot)
    supply = Supply(price_per_kwh=0.1, capacity_kw=0.7 * float(net.power_at(0.0).sum()))
    result = clear(net, price_cap=CAP, supply=supply)
    p.respond(result.clearing_price, result.marginal_fill)
    metered = np.sum([p.step(t, 60, hot).energy_kwh for t in range(start, start + IV, 60)], 0)
    allocated = float(result.allocation_kw.sum()) * IV / 3600.0
    assert abs(metered.sum() - allocated) <= 0.03 * allocated
