"""EV population: urgency bids, the paper's 7.8 kWh / 2 h example, deadlines always met."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import Population, PriceStats
from transactive.devices.ev import EVPopulation
from transactive.errors import ValidationError
from transactive.market import clear
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)
CAP = 1.0
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=CAP)


def paper_ev() -> EVPopulation:
    """Hu et al. (2019) via refs [24], [32]: an EV needs 7.8 kWh within 2 hours (7.4 kW charger)."""
    return EVPopulation(
        arrival_s=[0.0],
        departure_s=[7200.0],
        energy_needed_kwh=[7.8],
        max_power_kw=[7.4],
        efficiency=0.9,
        interval_s=300.0,
    )


def test_is_a_population() -> None:
    assert isinstance(paper_ev(), Population)


def test_paper_example_waits_while_prices_are_high_then_must_run_meets_the_need() -> None:
    ev = paper_ev()
    flex_prices, charged = [], []
    while ev.time_s < 7200.0:
        curves = ev.bid(STATS)
        flex_prices.append(float(curves.price_per_kwh[0, 0]))
        # Every interval clears at a price above the EV's flexible bid but below the cap.
        power = ev.respond(0.99)
        charged.append(float(power[0]))
        ev.step(300.0, WEATHER)
    assert ev.delivered_kwh[0] == pytest.approx(7.8, abs=1e-9)
    assert ev.shortfall_kwh[0] == pytest.approx(0.0, abs=1e-9)
    # Grid energy 7.8 / 0.9 = 8.67 kWh at 7.4 kW needs 70.3 min: it waits the first ~50 minutes.
    waiting = int(np.argmax(np.asarray(charged) > 0))
    assert 9 <= waiting <= 10
    assert all(c == 0.0 for c in charged[:waiting])
    # While it waits its urgency (and so its price) rises; after that it bids at the cap.
    assert np.all(np.diff(flex_prices[:waiting]) > 0)
    assert max(charged) <= 7.4 + 1e-12


def test_paper_example_at_a_low_price_charges_at_full_power_and_stops_when_done() -> None:
    ev = paper_ev()
    energy = 0.0
    powers = []
    for _ in range(24):
        ev.bid(STATS)
        powers.append(float(ev.respond(0.0)[0]))
        energy += float(ev.step(300.0, WEATHER).energy_kwh[0])
    assert powers[0] == pytest.approx(7.4)
    assert ev.delivered_kwh[0] == pytest.approx(7.8)
    assert energy == pytest.approx(7.8 / 0.9)  # energy balance: grid energy * efficiency
    assert powers[-1] == 0.0


def test_an_ev_that_can_only_just_make_it_bids_everything_at_the_cap() -> None:
    # 3.7 kW for exactly one hour at 100 % efficiency: 3.7 kWh, no laxity left.
    ev = EVPopulation(
        arrival_s=0.0, departure_s=3600.0, energy_needed_kwh=3.7, max_power_kw=3.7, efficiency=1.0
    )
    curves = ev.bid(STATS)
    assert curves.power_at(CAP - 1e-9)[0] == pytest.approx(3.7)
    assert curves.power_at(0.0)[0] == pytest.approx(3.7)
    assert curves.power_at(CAP, 1.0)[0] == pytest.approx(3.7)  # served in full at the cap
    assert curves.power_at(CAP + 1e-9)[0] == 0.0


def test_bid_price_rises_with_urgency_across_evs() -> None:
    ev = EVPopulation(
        arrival_s=0.0,
        departure_s=[36000.0, 36000.0, 36000.0],
        energy_needed_kwh=[5.0, 20.0, 40.0],
        max_power_kw=7.4,
        efficiency=1.0,
    )
    prices = ev.bid(STATS).price_per_kwh[:, 0]
    assert prices[0] < prices[1] < prices[2]
    assert STATS.mean_per_kwh - STATS.std_per_kwh <= prices[0]
    assert prices[2] <= STATS.mean_per_kwh + STATS.std_per_kwh


def test_unplugged_evs_bid_zero_power() -> None:
    ev = EVPopulation(
        arrival_s=[0.0, 3600.0, 0.0],
        departure_s=[7200.0, 7200.0, 600.0],
        energy_needed_kwh=[5.0, 5.0, 1.0],
        max_power_kw=7.4,
        time_s=1200.0,  # EV 1 not yet arrived, EV 2 already gone
    )
    curves = ev.bid(STATS)
    assert curves.power_kw[1].max() == 0.0
    assert curves.power_kw[2].max() == 0.0
    assert curves.power_kw[0].max() > 0.0


def test_curves_monotone_within_the_cap_and_response_matches_the_market() -> None:
    rng = np.random.default_rng(7)
    ev = EVPopulation.sample(400, rng)
    ev.time_s = 20 * 3600.0
    curves = ev.bid(STATS)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)  # validates monotonicity
    curves.check_prices_within(price_floor=0.0, price_cap=CAP)
    seller = BidCurves.from_breakpoints([[0.05, 0.2]], [[0.0, -float(curves.power_kw[:, 0].sum())]])
    result = clear(BidCurves.concat([curves, seller]), price_cap=CAP)
    power = ev.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(power, result.allocation_kw[:-1], atol=1e-9)
    np.testing.assert_allclose(
        power, curves.power_at(result.clearing_price, result.marginal_fill[:-1])
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.floats(0.0, 4 * 3600.0),  # arrival
            st.floats(600.0, 12 * 3600.0),  # dwell
            st.floats(1.0, 22.0),  # charger kW
            st.floats(0.8, 1.0),  # efficiency
            st.floats(0.0, 1.0),  # share of the feasible energy needed
        ),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_ev_meets_its_need_whatever_the_prices_below_the_cap(data, seed) -> None:
    interval = 300.0
    arr = np.array([d[0] for d in data])
    dep = arr + np.array([d[1] for d in data])
    power = np.array([d[2] for d in data])
    eff = np.array([d[3] for d in data])
    # Charging can start at the first market interval after arrival.
    start = np.ceil(arr / interval) * interval
    feasible = power * eff * np.maximum(dep - start, 0.0) / 3600.0
    need = np.array([d[4] for d in data]) * feasible
    ev = EVPopulation(
        arrival_s=arr,
        departure_s=dep,
        energy_needed_kwh=need,
        max_power_kw=power,
        efficiency=eff,
        interval_s=interval,
    )
    rng = np.random.default_rng(seed)
    grid_energy = 0.0
    while ev.time_s < dep.max():
        ev.bid(STATS)
        price = rng.uniform(0.0, CAP) if rng.random() < 0.9 else CAP
        fill = rng.random() if price < CAP else 1.0  # demand at the cap is served in full
        p = ev.respond(price, fill)
        assert np.all(p <= power + 1e-9)
        grid_energy += float(ev.step(interval, WEATHER).energy_kwh.sum())
    np.testing.assert_allclose(ev.delivered_kwh, need, rtol=1e-9, atol=1e-9)
    assert math.isclose(
        grid_energy, float((ev.delivered_kwh / eff).sum()), rel_tol=1e-9, abs_tol=1e-9
    )


def test_bad_parameters_name_every_offending_device() -> None:
    with pytest.raises(ValidationError) as info:
        EVPopulation(
            arrival_s=[0.0, 10.0, 0.0, 50.0],
            departure_s=[100.0, 5.0, 100.0, 40.0],
            energy_needed_kwh=[1.0, 1.0, -1.0, np.nan],
            max_power_kw=[7.4, 0.0, 7.4, 7.4],
            efficiency=[0.9, 0.9, 1.5, 0.9],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("departure_s", (1, 3)) in found
    assert ("energy_needed_kwh", (3,)) in found  # NaN
    assert ("energy_needed_kwh", (2,)) in found  # negative
    assert ("max_power_kw", (1,)) in found
    assert ("efficiency", (2,)) in found


def test_respond_before_bid_and_bad_prices_are_rejected() -> None:
    ev = paper_ev()
    with pytest.raises(ValidationError, match="before bid"):
        ev.respond(0.1)
    ev.bid(STATS)
    with pytest.raises(ValidationError, match="marginal_fill"):
        ev.respond(0.1, 1.5)
    with pytest.raises(ValidationError, match="clearing_price"):
        ev.respond([0.1, 0.2])
    with pytest.raises(ValidationError, match="dt_s"):
        ev.step(-1.0, WEATHER)
