"""Battery population: buys low, sells high, never leaves its SOC band or power ratings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices.base import Population, PriceStats
from transactive.devices.battery import BatteryPopulation
from transactive.errors import ValidationError
from transactive.market import clear
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=20.0)
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)


def one(**kw: object) -> BatteryPopulation:
    args: dict[str, object] = {
        "capacity_kwh": 10.0,
        "charge_power_max_kw": 5.0,
        "discharge_power_max_kw": 5.0,
    }
    args.update(kw)
    return BatteryPopulation(**args)  # type: ignore[arg-type]


def test_is_a_population() -> None:
    assert isinstance(one(), Population)


def test_curve_buys_low_sells_high_and_crosses_zero() -> None:
    b = one(soc_pu=0.5, charge_efficiency=0.9, discharge_efficiency=0.9)
    curves = b.bid(STATS)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)  # monotone
    curves.check_prices_within(price_floor=0.0, price_cap=1.0)
    assert curves.power_at(0.05)[0] == pytest.approx(5.0)  # below mean - σ: charge
    assert curves.power_at(0.10)[0] == 0.0  # inside the band: idle
    assert curves.power_at(0.20)[0] == pytest.approx(-5.0)  # above the sell threshold
    buy, sell = curves.price_per_kwh[0, 0], curves.price_per_kwh[0, -1]
    assert buy == pytest.approx(0.07)
    # The sell price covers the round trip: 0.07 / 0.81 = 0.0864 < 0.13, so mean + σ applies.
    assert sell == pytest.approx(0.13)
    wide = one(charge_efficiency=0.5, discharge_efficiency=0.5).bid(STATS)
    assert wide.price_per_kwh[0, -1] == pytest.approx(0.07 / 0.25)


def test_full_battery_only_sells_and_empty_battery_only_buys() -> None:
    b = one(soc_pu=[0.9, 0.1], soc_min_pu=0.1, soc_max_pu=0.9)
    curves = b.bid(STATS)
    assert curves.power_at(0.0)[0] == 0.0 and curves.power_at(1.0)[0] < 0.0
    assert curves.power_at(0.0)[1] > 0.0 and curves.power_at(1.0)[1] == 0.0


def test_limits_near_the_band_edge_cut_the_bid() -> None:
    b = one(soc_pu=0.88, soc_max_pu=0.9, charge_efficiency=1.0, interval_s=3600.0)
    # 0.02 * 10 kWh of room in one hour: 0.2 kW, not the 5 kW rating.
    assert b.bid(STATS).power_kw[0, 0] == pytest.approx(0.2)


def test_response_matches_market_allocation_with_marginal_fill() -> None:
    rng = np.random.default_rng(3)
    b = BatteryPopulation.sample(300, rng)
    curves = b.bid(STATS)
    load = BidCurves.unresponsive([50.0], price_cap=1.0)
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
        b.bid(STATS)
        price = 0.05 if (k // 36) % 2 == 0 else 0.2
        b.respond(price)
        e = b.step(300.0, WEATHER).energy_kwh
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
        st.tuples(
            st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([60.0, 300.0, 900.0, 3600.0])
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_soc_and_power_never_leave_their_limits(
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
        interval_s=300.0,
    )
    for price, fill, dt in prices:
        b.bid(STATS)
        setpoint = b.respond(price, fill)
        assert -p_d - 1e-12 <= setpoint[0] <= p_c + 1e-12
        result = b.step(dt, WEATHER)  # steps longer than the market interval included
        assert -p_d - 1e-12 <= result.power_kw[0] <= p_c + 1e-12
        assert lo - 1e-12 <= b.soc_pu[0] <= hi + 1e-12


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
