"""Smart appliances: shiftable, non-interruptible cycles bidding by urgency; deadlines always met,
exact energy per cycle, no start before the earliest start, the baseline's start at it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.devices import APPLIANCE_CYCLES, AppliancePopulation
from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.flexibility import FlexiblePopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

WEATHER = WeatherSample(temperature_c=10.0)
CAP = 1.0
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=CAP)
IV = 300


def washer(**overrides: object) -> AppliancePopulation:
    """A 2 kW / 0.1 kW / 0.4 kW washing cycle (2 h), loaded at 1 h and due at 5 h."""
    args: dict[str, object] = {
        "phase_power_kw": [[2.0, 0.1, 0.4]],
        "phase_duration_s": [[1200.0, 4500.0, 1500.0]],
        "earliest_start_s": [3600.0],
        "latest_finish_s": [18000.0],
    }
    args.update(overrides)
    return AppliancePopulation(**args)  # type: ignore[arg-type]


def run(pop: AppliancePopulation, hours: float, answer, step_s: int = 60) -> np.ndarray:
    """Bid, respond by ``answer(k, curves)`` -> (price, fill), step; the metered energy."""
    total = np.zeros(pop.n_devices)
    for k in range(int(hours * 3600 / IV)):
        iv = MarketInterval(k * IV, IV)
        curves = pop.bid(STATS, iv, WEATHER)
        price, fill = answer(k, curves)
        power = pop.respond(price, fill)
        interval = np.zeros(pop.n_devices)
        for t in range(iv.start_s, iv.end_s, step_s):
            interval += pop.step(t, min(step_s, iv.end_s - t), WEATHER).energy_kwh
        np.testing.assert_allclose(interval * 3600 / IV, power, rtol=1e-12, atol=1e-12)
        total += interval
    return total


def test_is_a_population_and_not_a_generalized_battery() -> None:
    assert isinstance(washer(), Population)
    assert not isinstance(washer(), FlexiblePopulation)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    prices=st.lists(st.floats(0.0, CAP), min_size=8, max_size=8),
    fills=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
)
def test_the_deadline_is_met_and_the_cycle_energy_is_exact_at_any_price(seed, prices, fills):
    pop = AppliancePopulation.sample(60, np.random.default_rng(seed))
    metered = run(pop, 36, lambda k, _: (prices[k % 8], fills[k % 8]))
    assert (pop.finish_s() <= pop.latest_finish_s).all()
    assert (pop.start_s >= pop.earliest_start_s).all()
    np.testing.assert_allclose(metered, pop.cycle_energy_kwh, rtol=1e-12)
    np.testing.assert_array_equal(pop.unserved_kwh(36 * 3600), 0.0)


def test_prices_above_every_bid_but_the_cap_start_at_the_latest_start() -> None:
    pop = washer()
    run(pop, 6, lambda k, _: (CAP, 0.0))  # the market never awards a flexible block
    # latest start 18000 - 7200 = 10800 s, an interval's start: it must start in [10800, 11100)
    assert pop.start_s[0] == 10800.0
    assert pop.finish_s()[0] == pop.latest_finish_s[0]


def test_energy_per_cycle_is_exact_for_any_step_and_start_inside_a_step() -> None:
    for step_s in (7, 60, 300):
        pop = washer(earliest_start_s=[3650.0])  # starts 50 s into an interval
        metered = run(pop, 6, lambda k, _: (0.0, 1.0), step_s=step_s)
        assert pop.start_s[0] == 3650.0
        np.testing.assert_allclose(
            metered, 2.0 * 1200 / 3600 + 0.1 * 4500 / 3600 + 0.4 * 1500 / 3600
        )
    # one long step over the whole cycle and past it
    pop = washer()
    pop.bid(STATS, MarketInterval(3600, IV), WEATHER)
    pop.respond(0.0, 1.0)
    res = pop.step(0, 6 * 3600, WEATHER)
    np.testing.assert_allclose(res.energy_kwh, pop.cycle_energy_kwh, rtol=1e-15)


def test_no_start_before_the_earliest_start() -> None:
    pop = washer()
    for k in range(12):  # the first hour: not loaded yet, at any price
        curves = pop.bid(STATS, MarketInterval(k * IV, IV), WEATHER)
        np.testing.assert_array_equal(curves.power_kw, 0.0)
        assert pop.respond(0.0, 1.0)[0] == 0.0
        assert pop.step(k * IV, IV, WEATHER).energy_kwh[0] == 0.0
    assert pop.waiting()[0]


def test_the_baseline_is_the_own_bid_at_the_floor_with_a_full_fill() -> None:
    pop = AppliancePopulation.sample(200, np.random.default_rng(3))
    run(pop, 30, lambda k, _: (STATS.price_floor_per_kwh, 1.0))
    np.testing.assert_array_equal(pop.start_s, pop.earliest_start_s)  # starts when loaded


def test_the_bid_price_rises_with_urgency_and_is_the_cap_at_the_latest_start() -> None:
    pop = washer()
    prices = []
    for k in range(12, 37):  # from loading (1 h) to the latest start (3 h)
        curves = pop.bid(STATS, MarketInterval(k * IV, IV), WEATHER)
        prices.append(float(curves.price_per_kwh[0, 0]))
        assert curves.power_kw[0, 0] == pytest.approx(2.0)  # the cycle's first phase
        pop.respond(CAP, 0.0)
    assert prices[0] == pytest.approx(STATS.mean_per_kwh - STATS.std_per_kwh)  # no urgency
    assert np.all(np.diff(prices[:-1]) > 0)
    assert prices[-2] < STATS.mean_per_kwh + STATS.std_per_kwh + 1e-12
    assert prices[-1] == CAP  # the interval holding the latest start: must start


@pytest.mark.parametrize(("fill", "starts"), [(0.4, False), (0.6, True)])
def test_a_cycle_is_one_or_nothing_at_a_marginal_fill(fill, starts) -> None:
    pop = washer()
    curves = pop.bid(STATS, MarketInterval(3600, IV), WEATHER)
    price = float(curves.price_per_kwh[0, 0])
    power = pop.respond(price, fill)
    assert power[0] == (pytest.approx(2.0) if starts else 0.0)
    assert pop.waiting()[0] != starts
    np.testing.assert_allclose(pop.step(3600, IV, WEATHER).power_kw, power)


def test_a_running_cycle_must_run_at_the_cap_and_cannot_be_interrupted() -> None:
    pop = washer()
    pop.bid(STATS, MarketInterval(3600, IV), WEATHER)
    pop.respond(0.0, 1.0)
    pop.step(3600, IV, WEATHER)
    curves = pop.bid(STATS, MarketInterval(3900, IV), WEATHER)
    np.testing.assert_array_equal(curves.price_per_kwh, CAP)
    assert pop.respond(CAP + 1.0, 0.0)[0] == pytest.approx(2.0)  # above the cap: runs anyway
    assert pop.step(3900, IV, WEATHER).power_kw[0] == pytest.approx(2.0)


def test_in_a_binding_market_the_metered_load_is_what_respond_returned() -> None:
    pop = AppliancePopulation.sample(500, np.random.default_rng(9), morning_share=1.0)

    def answer(k: int, curves: BidCurves) -> tuple[float, np.ndarray]:
        rating = 0.3 * float(curves.bounds_at(0.0)[1].sum())  # a third of what they would take
        result = clear(curves, price_cap=CAP, supply=Supply(0.0, rating))
        return result.clearing_price, result.marginal_fill

    metered = run(pop, 24, answer)  # run() checks every interval's energy against respond
    np.testing.assert_allclose(metered, pop.cycle_energy_kwh, rtol=1e-12)
    assert (pop.finish_s() <= pop.latest_finish_s).all()
    assert (pop.start_s > pop.earliest_start_s).any()  # some waited


def test_the_own_timer_starts_at_the_latest_start_without_a_market() -> None:
    pop = washer()
    energy = sum(pop.step(t, 60, WEATHER).energy_kwh[0] for t in range(0, 6 * 3600, 60))
    assert pop.start_s[0] == 10800.0
    assert energy == pytest.approx(float(pop.cycle_energy_kwh[0]))


def test_sampled_cycles() -> None:
    pop = AppliancePopulation.sample(2000, np.random.default_rng(1))
    for name, phases in APPLIANCE_CYCLES.items():
        mine = pop.labels == name
        assert 0.1 < mine.mean() < 0.6
        nominal = sum(p * d / 60 for p, d in phases)
        ratio = pop.cycle_energy_kwh[mine] / nominal
        assert ((ratio >= 0.85 - 1e-12) & (ratio <= 1.15 + 1e-12)).all()
    window_h = (pop.latest_finish_s - pop.earliest_start_s) / 3600
    assert ((window_h >= 6 - 1e-3) & (window_h <= 12 + 1e-3)).all()
    load_h = pop.earliest_start_s / 3600
    assert (((load_h >= 7) & (load_h <= 9)) | ((load_h >= 18) & (load_h <= 21))).all()
    with pytest.raises(ValidationError) as info:
        AppliancePopulation.sample(
            3, np.random.default_rng(0), kind_share=(0.5, 0.5, 0.5), morning_share=2.0,
            window_h=(1.0, 3.0),
        )  # fmt: skip
    assert {p.field for p in info.value.problems} == {"kind_share", "morning_share", "window_h"}
    with pytest.raises(ValidationError, match="rng"):
        AppliancePopulation.sample(3, None)  # type: ignore[arg-type]


def test_empty_population_and_ids_kept() -> None:
    empty = AppliancePopulation.sample(0, np.random.default_rng(0))
    assert len(empty.bid(STATS, MarketInterval(0, IV), WEATHER)) == 0
    assert empty.respond(0.1, 0.0).shape == (0,)
    assert empty.step(0, 60, WEATHER).energy_kwh.shape == (0,)
    pop = AppliancePopulation.sample(2, np.random.default_rng(0), ids=["wm-a", "dw-b"])
    assert list(pop.bid(STATS, MarketInterval(0, IV), WEATHER).ids) == ["wm-a", "dw-b"]  # type: ignore[arg-type]
    assert list(pop.step(0, 60, WEATHER).ids) == ["wm-a", "dw-b"]  # type: ignore[arg-type]


def test_respond_before_bid_raises() -> None:
    with pytest.raises(ValidationError, match="bid"):
        washer().respond(0.1, 0.0)


def test_bad_parameters_name_every_field_and_index() -> None:
    with pytest.raises(ValidationError) as info:
        AppliancePopulation(
            phase_power_kw=[[1.0, -0.5], [1.0, 1.0], [np.nan, 1.0], [1.0, 1.0]],
            phase_duration_s=[[600.0, 600.0], [-60.0, 60.0], [600.0, 600.0], [0.0, 0.0]],
            earliest_start_s=[0.0, 0.0, 0.0, 0.0],
            latest_finish_s=[600.0, 3600.0, 3600.0, 3600.0],
            band_k=[1.0, -1.0, 1.0, 1.0],
            start_s=[np.nan, np.nan, np.nan, np.inf],
            ids=["a", "b", "c", "c"],
        )
    found = {(p.field, (i,)) for p in info.value.problems for i in p.index}
    assert ("phase_power_kw", (0,)) in found  # negative
    assert ("phase_power_kw", (2,)) in found  # NaN
    assert ("phase_duration_s", (1,)) in found  # negative
    assert ("phase_duration_s", (3,)) in found  # lasts 0 s
    assert ("latest_finish_s", (0,)) in found  # 1200 s do not fit in 600 s
    assert ("band_k", (1,)) in found
    assert ("start_s", (3,)) in found
    assert any("id" in p.field for p in info.value.problems)  # duplicate ids
    with pytest.raises(ValidationError) as info:
        AppliancePopulation(
            phase_power_kw=[1.0, 2.0],
            phase_duration_s=[[60.0], [60.0]],
            earliest_start_s=[0.0, 0.0, 0.0],
            latest_finish_s=[3600.0, 3600.0, 3600.0],
        )
    fields = {p.field for p in info.value.problems}
    assert {"phase_power_kw", "phase_duration_s"} <= fields  # 2 rows for 3 devices
    with pytest.raises(ValidationError, match="start_s"):
        washer(start_s=[0.0])  # started before it was loaded
