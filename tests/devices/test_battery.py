"""Battery population: buys low, sells high, never leaves its SOC band or power ratings; meters
its allocation over the interval; its best response matches an independent LP per device."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import Horizon, MarketInterval, Population, PriceStats
from transactive.devices.battery import BatteryPopulation
from transactive.devices.flexibility import FlexiblePopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
IV = 300
INTERVAL = MarketInterval(0, IV)


def one(**kw: object) -> BatteryPopulation:
    args: dict[str, object] = {
        "capacity_kwh": 10.0,
        "charge_power_max_kw": 5.0,
        "discharge_power_max_kw": 5.0,
    }
    args.update(kw)
    return BatteryPopulation(**args)  # type: ignore[arg-type]


def test_is_a_population_and_flexible() -> None:
    assert isinstance(one(), Population)
    assert isinstance(one(), FlexiblePopulation)


def test_curve_buys_low_sells_high_and_crosses_zero() -> None:
    b = one(soc_pu=0.5, charge_efficiency=0.9, discharge_efficiency=0.9)
    curves = b.bid(STATS, INTERVAL, WEATHER)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)  # monotone
    curves.check_prices_within(price_floor=0.0, price_cap=1.0)
    assert curves.power_at(0.05)[0] == pytest.approx(5.0)  # below mean - σ: charge
    assert curves.power_at(0.10)[0] == 0.0  # inside the band: idle
    assert curves.power_at(0.20)[0] == pytest.approx(-5.0)  # above the sell threshold
    buy, sell = curves.price_per_kwh[0, 0], curves.price_per_kwh[0, -1]
    assert buy == pytest.approx(0.07)
    # The sell price covers the round trip: 0.07 / 0.81 = 0.0864 < 0.13, so mean + σ applies.
    assert sell == pytest.approx(0.13)
    wide = one(charge_efficiency=0.5, discharge_efficiency=0.5).bid(STATS, INTERVAL, WEATHER)
    assert wide.price_per_kwh[0, -1] == pytest.approx(0.07 / 0.25)


def test_full_battery_only_sells_and_empty_battery_only_buys() -> None:
    b = one(soc_pu=[0.9, 0.1], soc_min_pu=0.1, soc_max_pu=0.9)
    curves = b.bid(STATS, INTERVAL, WEATHER)
    assert curves.power_at(0.0)[0] == 0.0 and curves.power_at(1.0)[0] < 0.0
    assert curves.power_at(0.0)[1] > 0.0 and curves.power_at(1.0)[1] == 0.0


def test_limits_near_the_band_edge_cut_the_bid() -> None:
    b = one(soc_pu=0.88, soc_max_pu=0.9, charge_efficiency=1.0)
    # 0.02 * 10 kWh of room in one hour: 0.2 kW, not the 5 kW rating.
    assert b.bid(STATS, MarketInterval(0, 3600), WEATHER).power_kw[0, 0] == pytest.approx(0.2)


def test_response_matches_market_allocation_with_marginal_fill() -> None:
    rng = np.random.default_rng(3)
    b = BatteryPopulation.sample(300, rng)
    curves = b.bid(STATS, INTERVAL, WEATHER)
    load = BidCurves.unresponsive([50.0], price_cap=1.0).with_ids(["load"])
    result = clear(BidCurves.concat([curves, load]), price_cap=1.0)
    power = b.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(power, result.allocation_kw[:-1], atol=1e-9)
    assert power.sum() < 0  # the batteries serve the load


def test_energy_balance_over_a_day() -> None:
    rng = np.random.default_rng(11)
    b = BatteryPopulation.sample(50, rng)
    stored0 = b.energy_kwh.copy()
    charged = np.zeros(50)
    discharged = np.zeros(50)
    for k in range(288):
        b.bid(STATS, MarketInterval(k * IV, IV), WEATHER)
        price = 0.05 if (k // 36) % 2 == 0 else 0.2
        b.respond(price, 0.0)
        e = b.step(k * IV, IV, WEATHER).energy_kwh
        charged += np.maximum(e, 0.0)
        discharged += np.maximum(-e, 0.0)
    expected = stored0 + b.charge_efficiency * charged - discharged / b.discharge_efficiency
    np.testing.assert_allclose(b.energy_kwh, expected, rtol=1e-12, atol=1e-9)
    assert charged.sum() > 0 and discharged.sum() > 0


@settings(max_examples=80, deadline=None)
@given(
    cap=st.floats(0.5, 50.0),
    p_c=st.floats(0.0, 30.0),
    p_d=st.floats(0.0, 30.0),
    eta_c=st.floats(0.5, 1.0),
    eta_d=st.floats(0.5, 1.0),
    band=st.tuples(st.floats(0.0, 0.5), st.floats(0.5, 1.0)),
    start=st.floats(0.0, 1.0),
    prices=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([1, 60, 100, 300])),
        min_size=1,
        max_size=30,
    ),
)
def test_soc_and_power_never_leave_their_limits_and_the_interval_meters_its_allocation(
    cap, p_c, p_d, eta_c, eta_d, band, start, prices
) -> None:
    lo, hi = band
    if hi - lo < 1e-6:
        hi = lo + 1e-3
    b = BatteryPopulation(
        capacity_kwh=cap,
        charge_power_max_kw=p_c,
        discharge_power_max_kw=p_d,
        charge_efficiency=eta_c,
        discharge_efficiency=eta_d,
        soc_min_pu=lo,
        soc_max_pu=hi,
        soc_pu=lo + start * (hi - lo),
    )
    for k, (price, fill, dt) in enumerate(prices):
        b.bid(STATS, MarketInterval(k * IV, IV), WEATHER)
        setpoint = b.respond(price, fill)
        assert -p_d - 1e-12 <= setpoint[0] <= p_c + 1e-12
        metered = 0.0
        for t in range(k * IV, (k + 1) * IV, dt):
            result = b.step(t, dt, WEATHER)
            metered += float(result.energy_kwh[0])
            assert -p_d - 1e-12 <= result.power_kw[0] <= p_c + 1e-12
            assert lo - 1e-12 <= b.soc_pu[0] <= hi + 1e-12
        assert metered == pytest.approx(setpoint[0] * IV / 3600.0, rel=1e-9, abs=1e-12)


def test_a_step_past_the_interval_is_idle_for_its_remainder() -> None:
    b = one(soc_pu=0.5)
    b.bid(STATS, MarketInterval(0, IV), WEATHER)
    b.respond(0.0, 0.0)  # charge at 5 kW for the interval
    step = b.step(0, 2 * IV, WEATHER)  # half of the step is after the interval
    assert step.energy_kwh[0] == pytest.approx(5.0 * IV / 3600.0)
    assert step.power_kw[0] == pytest.approx(2.5)
    assert b.step(2 * IV, 60, WEATHER).energy_kwh[0] == 0.0


@pytest.mark.parametrize("mode", ["charging", "binding", "selling"])
def test_a_thousand_batteries_meter_their_allocation_over_the_interval(mode: str) -> None:
    """Cheap ample supply (all charge); supply binding at the buy blocks (filled in part);
    a load larger than the sell blocks can serve in full (the batteries sell, rationed)."""
    b = BatteryPopulation.sample(1000, np.random.default_rng(21))
    for k in range(3):
        interval = MarketInterval(k * IV, IV)
        curves = b.bid(STATS, interval, WEATHER)
        charge = float(curves.power_at(0.0).sum())
        if mode == "charging":
            bids, supply = curves, Supply(price_per_kwh=0.01, capacity_kw=np.inf)
        elif mode == "binding":
            bids, supply = curves, Supply(price_per_kwh=0.01, capacity_kw=0.5 * charge)
        else:
            sell = -float(curves.power_at(1.0).sum())
            load = BidCurves.unresponsive([0.5 * sell], price_cap=1.0).with_ids(["load"])
            bids, supply = BidCurves.concat([curves, load]), None
        result = clear(bids, price_cap=1.0, supply=supply)
        allocation = result.allocation_kw[: b.n_devices]
        b.respond(result.clearing_price, result.marginal_fill[: b.n_devices])
        metered = np.zeros(b.n_devices)
        for t in range(interval.start_s, interval.end_s, 60):
            metered += b.step(t, 60, WEATHER).energy_kwh
        allocated_kwh = allocation * IV / 3600.0
        np.testing.assert_allclose(metered, allocated_kwh, rtol=1e-9, atol=1e-12)  # per device
        total = np.abs(allocated_kwh).sum()
        assert total > 0 and abs(metered.sum() - allocated_kwh.sum()) <= 0.03 * total
        if mode == "binding":
            assert result.supply_kw == pytest.approx(0.5 * charge)
            assert np.any((result.marginal_fill > 0) & (result.marginal_fill < 1))


def test_ids_empty_population_and_sample_arguments() -> None:
    b = one(capacity_kwh=[10.0, 5.0], ids=["home-1", "home-2"])
    curves = b.bid(STATS, INTERVAL, WEATHER)
    assert curves.ids is not None and curves.ids.tolist() == ["home-1", "home-2"]
    b.respond(0.1, 0.0)
    step = b.step(0, 60, WEATHER)
    assert step.ids is not None and step.ids.tolist() == ["home-1", "home-2"]
    assert one(capacity_kwh=[1.0, 2.0]).ids.tolist() == ["battery-0", "battery-1"]
    empty = BatteryPopulation.sample(0, np.random.default_rng(0))
    assert empty.n_devices == 0
    assert len(empty.bid(STATS, INTERVAL, WEATHER)) == 0
    assert empty.respond(0.1, 1.0).shape == (0,)
    assert empty.step(0, 60, WEATHER).power_kw.shape == (0,)
    with pytest.raises(ValidationError) as info:
        BatteryPopulation.sample(-1, np.random.RandomState(0))  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"n", "rng"}


def test_bad_prices_stats_and_weather_are_refused_and_the_fill_is_required() -> None:
    b = one()
    with pytest.raises(ValidationError, match="std_per_kwh"):
        b.bid(PriceStats(0.1, float("nan"), 1.0), INTERVAL, WEATHER)
    with pytest.raises(ValidationError, match="ghi_w_per_m2"):
        b.bid(STATS, INTERVAL, WeatherSample(temperature_c=10.0, ghi_w_per_m2=float("nan")))
    b.bid(STATS, INTERVAL, WEATHER)
    with pytest.raises(TypeError):
        b.respond(0.1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="clearing_price"):
        b.respond(float("nan"), 0.0)


# ------------------------------------------------------------------ horizon view


def cvxpy_best_cost(b: BatteryPopulation, i: int, prices: np.ndarray, h: float) -> float:
    """One battery's cheapest schedule, solved on its own with cvxpy (Clarabel)."""
    t_n = prices.size
    c, d, e = cp.Variable(t_n, nonneg=True), cp.Variable(t_n, nonneg=True), cp.Variable(t_n)
    stored = h * (b.charge_efficiency[i] * c - d / b.discharge_efficiency[i])
    constraints = [
        e[0] == b.energy_kwh[i] + stored[0],
        e[1:] == e[:-1] + stored[1:],
        c <= b.charge_power_max_kw[i],
        d <= b.discharge_power_max_kw[i],
        e >= b.soc_min_pu[i] * b.capacity_kwh[i],
        e <= b.soc_max_pu[i] * b.capacity_kwh[i],
    ]
    problem = cp.Problem(cp.Minimize(h * prices @ (c - d)), constraints)
    problem.solve(solver=cp.CLARABEL)  # type: ignore[no-untyped-call]
    return float(problem.value)


def test_best_response_matches_a_separate_lp_per_battery_and_meets_every_constraint() -> None:
    rng = np.random.default_rng(8)
    b = BatteryPopulation.sample(12, rng)
    horizon = Horizon(start_s=0, period_s=3600, n_periods=24)
    hours = np.arange(24)
    prices = 0.12 + 0.08 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 0.01, 24)
    soc_before = b.soc_pu.copy()
    br = b.best_response(prices, horizon, [WEATHER] * 24)
    np.testing.assert_array_equal(b.soc_pu, soc_before)  # side-effect free
    expected = [cvxpy_best_cost(b, i, prices, 1.0) for i in range(b.n_devices)]
    np.testing.assert_allclose(br.cost, expected, rtol=1e-5, atol=1e-6)
    assert np.all(br.cost < 0)  # arbitrage over a daily swing earns money
    tol = 1e-7
    assert np.all(br.power_kw <= b.charge_power_max_kw + tol)
    assert np.all(br.power_kw >= -b.discharge_power_max_kw - tol)
    assert np.all(br.energy_kwh >= b.soc_min_pu * b.capacity_kwh - tol)
    assert np.all(br.energy_kwh <= b.soc_max_pu * b.capacity_kwh + tol)
    charge, discharge = np.maximum(br.power_kw, 0), np.maximum(-br.power_kw, 0)
    stored = b.energy_kwh + np.cumsum(
        b.charge_efficiency * charge - discharge / b.discharge_efficiency, axis=0
    )
    np.testing.assert_allclose(br.energy_kwh, stored, atol=1e-6)  # no charge and discharge at once


def test_free_energy_leaves_the_batteries_idle_by_the_tie_break() -> None:
    b = BatteryPopulation.sample(5, np.random.default_rng(9))
    horizon = Horizon(start_s=0, period_s=900, n_periods=8)
    br = b.best_response(np.zeros(8), horizon, [WEATHER] * 8)  # every schedule costs nothing
    np.testing.assert_allclose(br.power_kw, 0.0, atol=1e-9)
    np.testing.assert_allclose(br.energy_kwh, np.broadcast_to(b.energy_kwh, (8, 5)), atol=1e-9)


def test_flat_positive_prices_empty_the_batteries_there_is_no_value_left_at_the_end() -> None:
    b = one(soc_pu=0.5, soc_min_pu=0.1, charge_efficiency=1.0, discharge_efficiency=1.0)
    horizon = Horizon(start_s=0, period_s=3600, n_periods=2)
    br = b.best_response(np.full(2, 0.1), horizon, [WEATHER] * 2)
    # 4 kWh above the minimum, 5 kW rating: sold as early as possible (the tie-break).
    np.testing.assert_allclose(br.power_kw[:, 0], [-4.0, 0.0], atol=1e-9)
    assert br.cost[0] == pytest.approx(-0.4)


def test_bad_parameters_name_every_offending_device() -> None:
    with pytest.raises(ValidationError) as info:
        BatteryPopulation(
            capacity_kwh=[10.0, 0.0, 10.0, 10.0],
            charge_power_max_kw=[5.0, 5.0, -1.0, 5.0],
            discharge_power_max_kw=5.0,
            soc_pu=[0.5, 0.5, 0.5, 0.95],
            soc_min_pu=[0.1, 0.1, 0.1, 0.1],
            soc_max_pu=[0.9, 0.9, 0.9, 0.9],
            charge_efficiency=[0.9, 0.0, 0.9, 0.9],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("capacity_kwh", (1,)) in found
    assert ("charge_power_max_kw", (2,)) in found
    assert ("charge_efficiency", (1,)) in found
    assert ("soc_pu", (3,)) in found
    with pytest.raises(ValidationError, match="soc_min_pu"):
        one(soc_min_pu=0.8, soc_max_pu=0.2)
