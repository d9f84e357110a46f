"""EV population: urgency bids over the market interval, the paper's 7.8 kWh / 2 h example,
deadlines always met, interval energy equal to the allocation, and the horizon view."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import Horizon, MarketInterval, Population, PriceStats
from transactive.devices.ev import EVPopulation
from transactive.devices.flexibility import FlexiblePopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)
CAP = 1.0
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=CAP)
IV = 300


def paper_ev() -> EVPopulation:
    """Hu et al. (2019) via refs [24], [32]: an EV needs 7.8 kWh within 2 hours (7.4 kW charger)."""
    return EVPopulation(
        arrival_s=[0.0],
        departure_s=[7200.0],
        energy_needed_kwh=[7.8],
        max_power_kw=[7.4],
        efficiency=0.9,
    )


def test_is_a_population_and_flexible() -> None:
    assert isinstance(paper_ev(), Population)
    assert isinstance(paper_ev(), FlexiblePopulation)


def test_paper_example_waits_while_prices_are_high_then_must_run_meets_the_need() -> None:
    ev = paper_ev()
    flex_prices, charged = [], []
    for start in range(0, 7200, IV):
        curves = ev.bid(STATS, MarketInterval(start, IV), WEATHER)
        flex_prices.append(float(curves.price_per_kwh[0, 0]))
        # Every interval clears at a price above the EV's flexible bid but below the cap.
        power = ev.respond(0.99, 0.0)
        charged.append(float(power[0]))
        for t in range(start, start + IV, 60):
            ev.step(t, 60, WEATHER)
    assert ev.delivered_kwh[0] == pytest.approx(7.8, abs=1e-9)
    assert ev.shortfall_kwh(7200.0)[0] == pytest.approx(0.0, abs=1e-9)
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
    for start in range(0, 7200, IV):
        ev.bid(STATS, MarketInterval(start, IV), WEATHER)
        powers.append(float(ev.respond(0.0, 0.0)[0]))
        energy += float(ev.step(start, IV, WEATHER).energy_kwh[0])
    assert powers[0] == pytest.approx(7.4)
    assert ev.delivered_kwh[0] == pytest.approx(7.8)
    assert energy == pytest.approx(7.8 / 0.9)  # energy balance: grid energy * efficiency
    assert powers[-1] == 0.0


def test_an_ev_that_can_only_just_make_it_bids_everything_at_the_cap() -> None:
    # 3.7 kW for exactly one hour at 100 % efficiency: 3.7 kWh, no laxity left.
    ev = EVPopulation(
        arrival_s=0.0, departure_s=3600.0, energy_needed_kwh=3.7, max_power_kw=3.7, efficiency=1.0
    )
    curves = ev.bid(STATS, MarketInterval(0, IV), WEATHER)
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
    prices = ev.bid(STATS, MarketInterval(0, IV), WEATHER).price_per_kwh[:, 0]
    assert prices[0] < prices[1] < prices[2]
    assert STATS.mean_per_kwh - STATS.std_per_kwh <= prices[0]
    assert prices[2] <= STATS.mean_per_kwh + STATS.std_per_kwh


def test_unplugged_evs_bid_zero_power() -> None:
    ev = EVPopulation(
        arrival_s=[0.0, 3600.0, 0.0],
        departure_s=[7200.0, 7200.0, 600.0],
        energy_needed_kwh=[5.0, 5.0, 1.0],
        max_power_kw=7.4,
    )
    curves = ev.bid(STATS, MarketInterval(1200, IV), WEATHER)  # EV 1 not yet here, EV 2 gone
    assert curves.power_kw[1].max() == 0.0
    assert curves.power_kw[2].max() == 0.0
    assert curves.power_kw[0].max() > 0.0


def test_arrival_and_departure_inside_the_interval_bid_the_interval_average() -> None:
    # EV 0 arrives 120 s into [0, 300); EV 1 leaves 200 s into it, and must take all it can.
    ev = EVPopulation(
        arrival_s=[120.0, -3600.0],
        departure_s=[7200.0, 200.0],
        energy_needed_kwh=[20.0, 5.0],
        max_power_kw=6.0,
        efficiency=1.0,
        delivered_kwh=[0.0, 4.0],
    )
    curves = ev.bid(STATS, MarketInterval(0, IV), WEATHER)
    # At most 6 kW for 180 s (EV 0) and for 200 s (EV 1), averaged over 300 s.
    np.testing.assert_allclose(curves.power_at(0.0), [6.0 * 180 / 300, 6.0 * 200 / 300])
    # EV 1 needs 1 kWh but can take only 0.33 kWh before it leaves: all it can take is due now.
    assert curves.power_at(CAP - 1e-9)[1] == pytest.approx(6.0 * 200 / 300)
    power = ev.respond(0.0, 0.0)
    metered = np.zeros(2)
    for t in range(0, IV, 60):
        step = ev.step(t, 60, WEATHER)
        metered += step.energy_kwh
        if t == 60:  # EV 0 arrives at 120 s: nothing in [60, 120)
            assert step.energy_kwh[0] == 0.0
    np.testing.assert_allclose(metered, power * IV / 3600.0, rtol=1e-12)


def test_curves_monotone_within_the_cap_and_response_matches_the_market() -> None:
    rng = np.random.default_rng(7)
    ev = EVPopulation.sample(400, rng)
    curves = ev.bid(STATS, MarketInterval(20 * 3600, IV), WEATHER)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)  # validates monotonicity
    curves.check_prices_within(price_floor=0.0, price_cap=CAP)
    seller = BidCurves.from_breakpoints([[0.05, 0.2]], [[0.0, -float(curves.power_kw[:, 0].sum())]])
    result = clear(
        BidCurves.concat([curves.with_ids(ev.ids), seller.with_ids(["s"])]), price_cap=CAP
    )
    power = ev.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(power, result.allocation_kw[:-1], atol=1e-9)


@pytest.mark.parametrize("mode", ["ample", "binding", "short"])
def test_a_thousand_evs_meter_their_allocation_over_the_interval(mode: str) -> None:
    """Ample supply; supply binding (EV blocks filled in part); supply short of must-run demand."""
    rng = np.random.default_rng(11)
    ev = EVPopulation.sample(1000, rng)
    start = (28 if mode == "short" else 19) * 3600  # some arrive or leave within the intervals
    for k in range(3):
        interval = MarketInterval(start + k * IV, IV)
        curves = ev.bid(STATS, interval, WEATHER)
        capacity = {
            "ample": math.inf,
            "binding": 0.3 * float(curves.power_at(0.0).sum()),
            "short": 0.5 * float(curves.power_at(CAP - 1e-9).sum()),
        }[mode]
        result = clear(
            curves, price_cap=CAP, supply=Supply(price_per_kwh=0.05, capacity_kw=capacity)
        )
        allocated_kwh = result.allocation_kw * IV / 3600.0
        metered = np.zeros(ev.n_devices)
        ev.respond(result.clearing_price, result.marginal_fill)
        for t in range(interval.start_s, interval.end_s, 60):
            metered += ev.step(t, 60, WEATHER).energy_kwh
        # Exact per device (the plugged seconds of every step are exact).
        np.testing.assert_allclose(metered, allocated_kwh, rtol=1e-9, atol=1e-12)
        assert abs(metered.sum() - allocated_kwh.sum()) <= 0.03 * allocated_kwh.sum()
        if mode == "ample":
            assert result.clearing_price == 0.05
        elif mode == "binding":
            assert 0.05 < result.clearing_price < CAP
            assert result.supply_kw == pytest.approx(capacity)
        else:
            assert result.clearing_price == CAP and result.shortage_kw > 0


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 4 * 3600),  # arrival
            st.integers(600, 12 * 3600),  # dwell
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
    arr = np.array([d[0] for d in data], dtype=float)
    dep = arr + np.array([d[1] for d in data])
    power = np.array([d[2] for d in data])
    eff = np.array([d[3] for d in data])
    feasible = power * eff * (dep - arr) / 3600.0
    need = np.array([d[4] for d in data]) * feasible
    ev = EVPopulation(
        arrival_s=arr, departure_s=dep, energy_needed_kwh=need, max_power_kw=power, efficiency=eff
    )
    rng = np.random.default_rng(seed)
    grid_energy = 0.0
    for start in range(0, int(dep.max()) + IV, IV):
        ev.bid(STATS, MarketInterval(start, IV), WEATHER)
        price = rng.uniform(0.0, CAP) if rng.random() < 0.9 else CAP
        fill = rng.random() if price < CAP else 1.0  # demand at the cap is served in full
        p = ev.respond(price, fill)
        assert np.all(p <= power + 1e-9)
        for t in range(start, start + IV, 100):
            grid_energy += float(ev.step(t, 100, WEATHER).energy_kwh.sum())
    np.testing.assert_allclose(ev.delivered_kwh, need, rtol=1e-9, atol=1e-9)
    assert math.isclose(
        grid_energy, float((ev.delivered_kwh / eff).sum()), rel_tol=1e-9, abs_tol=1e-9
    )


def test_ids_default_are_given_and_carried_by_curves_and_steps() -> None:
    ev = EVPopulation(
        arrival_s=[0.0, 0.0], departure_s=3600.0, energy_needed_kwh=1.0, max_power_kw=3.7
    )
    assert ev.ids.tolist() == ["ev-0", "ev-1"]
    named = EVPopulation(
        arrival_s=[0.0, 0.0],
        departure_s=3600.0,
        energy_needed_kwh=1.0,
        max_power_kw=3.7,
        ids=["car-a", "car-b"],
    )
    curves = named.bid(STATS, MarketInterval(0, IV), WEATHER)
    assert curves.ids is not None and curves.ids.tolist() == ["car-a", "car-b"]
    named.respond(0.0, 0.0)
    step = named.step(0, 60, WEATHER)
    assert step.ids is not None and step.ids.tolist() == ["car-a", "car-b"]
    with pytest.raises(ValidationError, match="repeats"):
        EVPopulation(
            arrival_s=[0.0, 0.0],
            departure_s=3600.0,
            energy_needed_kwh=1.0,
            max_power_kw=3.7,
            ids=["x", "x"],
        )


def test_an_empty_fleet_bids_responds_and_steps() -> None:
    ev = EVPopulation(arrival_s=[], departure_s=[], energy_needed_kwh=[], max_power_kw=[])
    assert ev.n_devices == 0
    curves = ev.bid(STATS, MarketInterval(0, IV), WEATHER)
    assert len(curves) == 0
    assert ev.respond(0.1, 0.5).shape == (0,)
    assert ev.step(0, 60, WEATHER).energy_kwh.shape == (0,)
    assert EVPopulation.sample(0, np.random.default_rng(0)).n_devices == 0
    br = ev.best_response(np.ones(4), Horizon(0, 900, 4), [WEATHER] * 4)
    assert br.power_kw.shape == (4, 0)


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


def test_sample_refuses_a_negative_size_and_a_bad_rng() -> None:
    with pytest.raises(ValidationError) as info:
        EVPopulation.sample(-1, 42)  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"n", "rng"}


def test_respond_before_bid_bad_prices_bad_stats_and_bad_weather_are_rejected() -> None:
    ev = paper_ev()
    with pytest.raises(ValidationError, match="before bid"):
        ev.respond(0.1, 0.0)
    with pytest.raises(ValidationError, match="temperature_c"):
        ev.bid(STATS, MarketInterval(0, IV), WeatherSample(temperature_c=math.nan))
    tampered = dataclasses.replace(STATS)
    object.__setattr__(tampered, "std_per_kwh", math.nan)  # bypasses the constructor's check
    with pytest.raises(ValidationError, match="std_per_kwh"):
        ev.bid(tampered, MarketInterval(0, IV), WEATHER)
    with pytest.raises(ValidationError, match="interval"):
        ev.bid(STATS, 300, WEATHER)  # type: ignore[arg-type]
    ev.bid(STATS, MarketInterval(0, IV), WEATHER)
    with pytest.raises(TypeError):
        ev.respond(0.1)  # type: ignore[call-arg]  # the fill must be given
    with pytest.raises(ValidationError, match="marginal_fill"):
        ev.respond(0.1, 1.5)
    with pytest.raises(ValidationError, match="clearing_price"):
        ev.respond([0.1, 0.2], 0.0)
    with pytest.raises(ValidationError, match="dt_s"):
        ev.step(0, -1, WEATHER)
    with pytest.raises(ValidationError, match="time_s"):
        ev.step(1.5, 60, WEATHER)  # type: ignore[arg-type]


# ------------------------------------------------------------------ horizon view


def greedy_cheapest_periods(
    ev: EVPopulation, i: int, prices: np.ndarray, horizon: Horizon
) -> np.ndarray:
    """An independent best response of one EV: fill the cheapest plugged periods first.

    With no discharge and only a final need (reached at the latest by departure), filling the
    cheapest periods at full plugged power is optimal; ties go to the earlier period.
    """
    h = horizon.period_h
    starts = horizon.starts_s
    plugged = np.clip(
        np.minimum(starts + horizon.period_s, ev.departure_s[i])
        - np.maximum(starts, ev.arrival_s[i]),
        0,
        horizon.period_s,
    )
    cap_kw = ev.max_power_kw[i] * plugged / horizon.period_s
    need_grid = ev.remaining_kwh[i] / ev.efficiency[i]
    out = np.zeros(horizon.n_periods)
    for t in sorted(range(horizon.n_periods), key=lambda t: (prices[t], t)):
        take = min(cap_kw[t] * h, need_grid)
        out[t] = take / h
        need_grid -= take
    return out


def test_best_response_matches_the_greedy_cheapest_periods_fill() -> None:
    rng = np.random.default_rng(5)
    ev = EVPopulation.sample(60, rng)
    horizon = Horizon(start_s=16 * 3600, period_s=1800, n_periods=40)  # to 12:00 next day
    prices = np.round(rng.uniform(0.05, 0.3, horizon.n_periods), 2)  # rounded: ties happen
    before = ev.delivered_kwh.copy()
    br = ev.best_response(prices, horizon, [WEATHER] * horizon.n_periods)
    np.testing.assert_array_equal(ev.delivered_kwh, before)  # side-effect free
    expected = np.column_stack(
        [greedy_cheapest_periods(ev, i, prices, horizon) for i in range(ev.n_devices)]
    )
    expected_cost = (prices[:, None] * expected * horizon.period_h).sum(axis=0)
    np.testing.assert_allclose(br.cost, expected_cost, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(br.power_kw, expected, atol=1e-6)  # same tie-break: earliest


def test_best_response_meets_every_constraint() -> None:
    rng = np.random.default_rng(6)
    ev = EVPopulation.sample(80, rng)
    horizon = Horizon(start_s=17 * 3600, period_s=900, n_periods=64)
    prices = rng.uniform(0.0, 0.4, (horizon.n_periods, ev.n_devices))  # per-device prices
    weather = [WEATHER] * horizon.n_periods
    br = ev.best_response(prices, horizon, weather)
    flex = ev.flexibility(horizon, weather)
    tol = 1e-7
    assert np.all(br.power_kw >= -tol)
    assert np.all(br.power_kw <= flex.power_max_kw + tol)
    stored = ev.delivered_kwh + np.cumsum(br.power_kw * ev.efficiency * horizon.period_h, axis=0)
    np.testing.assert_allclose(br.energy_kwh, stored, atol=1e-6)
    assert np.all(stored <= flex.energy_max_kwh + 1e-6)
    assert np.all(stored >= flex.energy_min_kwh - 1e-6)
    gone = ev.departure_s <= horizon.start_s + horizon.n_periods * horizon.period_s
    np.testing.assert_allclose(stored[-1, gone], ev.energy_needed_kwh[gone], atol=1e-6)


def test_an_ev_that_cannot_finish_is_named() -> None:
    ev = EVPopulation(
        arrival_s=[0.0, 0.0],
        departure_s=[3600.0, 3600.0],
        energy_needed_kwh=[3.0, 3.0],
        max_power_kw=[7.4, 3.7],
        efficiency=1.0,
        ids=["fine", "late"],
    )
    horizon = Horizon(start_s=1800, period_s=900, n_periods=4)  # half an hour left: 1.85 kWh
    with pytest.raises(ValidationError) as info:
        ev.best_response(np.ones(4), horizon, [WEATHER] * 4)
    (problem,) = info.value.problems
    assert problem.index == ("late",)
