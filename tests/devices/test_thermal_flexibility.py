"""Horizon view of water heaters and heat pumps: their virtual batteries and best responses."""

import copy

import numpy as np
import pytest

from transactive.curves import BidCurves
from transactive.devices.base import Horizon, PriceStats
from transactive.devices.flexibility import BestResponse, Flexibility, FlexiblePopulation
from transactive.devices.heat_pump import HeatPumpPopulation, staffell_ashp_cop
from transactive.devices.water_heater import WATER_KJ_PER_L_K, WaterHeaterPopulation
from transactive.errors import ValidationError
from transactive.prosumer.virtual_battery import follow_schedule
from transactive.weather import WeatherSample

MILD = WeatherSample(10.0)
COLD = WeatherSample(-3.0)
STATS = PriceStats(mean_per_kwh=0.15, std_per_kwh=0.05, price_cap_per_kwh=1.0)


def check_schedule(best: BestResponse, flex: Flexibility) -> None:
    """The schedule meets every constraint of its flexibility (recomputed here)."""
    h = flex.horizon.period_h
    dev = best.power_kw - flex.baseline_kw
    assert (dev >= flex.power_min_kw - 1e-6).all() and (dev <= flex.power_max_kw + 1e-6).all()
    e = flex.initial_energy_kwh
    for k in range(flex.horizon.n_periods):
        e = flex.retention * e + dev[k] * h
        np.testing.assert_allclose(best.energy_kwh[k], e, atol=1e-6)
    assert (best.energy_kwh >= flex.energy_min_kwh - 1e-6).all()
    assert (best.energy_kwh <= flex.energy_max_kwh + 1e-6).all()


def tou_prices(horizon: Horizon) -> np.ndarray:
    """Night 0.08, day 0.15, evening peak (17:00-21:00) 0.40 per kWh."""
    hours = (horizon.starts_s % 86400) / 3600.0
    return np.where((hours >= 17) & (hours < 21), 0.40, np.where(hours < 6, 0.08, 0.15))


def tanks(n: int = 2, **overrides: object) -> WaterHeaterPopulation:
    args: dict[str, object] = {
        "tank_volume_l": 189.0,
        "ua_kw_per_k": 0.0011,
        "element_kw": 4.5,
        "setpoint_c": 52.0,
        "comfort_min_c": 47.0,
        "comfort_max_c": 57.0,
        "deadband_c": 1.5,
        "inlet_temperature_c": 15.0,
        "ambient_temperature_c": 20.0,
    }
    args.update(overrides)
    arrays = {
        k: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()
        if not k.startswith("draw")
        else v
        for k, v in args.items()
    }
    return WaterHeaterPopulation(**arrays)  # type: ignore[arg-type]


def price_and_fill_for(curves: BidCurves, kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The price (and fill) below the cap at which each curve gives ``kw``, clipped into range.

    The range is from the must-run power (column -2; less, the block at the cap, the tank's
    band would override) to the curve's most. The curves are monotone and linear between
    breakpoints: on a sloped segment the price is the line's, on a vertical one (a block) the
    segment's price with the fill that picks ``kw``.
    """
    p, q = curves.price_per_kwh, curves.power_kw
    kw = np.clip(kw, q[:, -2], q[:, 0])
    price = p[:, 0].copy()
    found = kw >= q[:, 0]  # at or above the curve's most: its lowest price
    for j in range(p.shape[1] - 1):
        here = ~found & (kw <= q[:, j]) & (kw >= q[:, j + 1])
        drop = q[:, j] - q[:, j + 1]
        share = np.where(drop > 0, (q[:, j] - kw) / np.where(drop > 0, drop, 1.0), 0.0)
        price = np.where(here, p[:, j] + share * (p[:, j + 1] - p[:, j]), price)
        found |= here
    lo, hi = curves.bounds_at(price)
    span = hi - lo
    fill = np.clip((kw - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return price, np.where(span > 0, fill, 0.0)


def respond_with_energy(pop: WaterHeaterPopulation, horizon: Horizon, t: int, kw: np.ndarray):
    """Bid period t, then respond so that each tank's curve gives its scheduled power."""
    curves = pop.bid(STATS, horizon.interval(t), MILD)
    price, fill = price_and_fill_for(curves, kw)
    power = pop.respond(price, fill)
    wanted = np.clip(kw, curves.power_kw[:, -2], curves.power_kw[:, 0])
    np.testing.assert_allclose(power, wanted, rtol=1e-9, atol=1e-12)
    return power


# ---------------------------------------------------------------------------- water heaters


def test_water_heater_battery_is_the_one_node_tank():
    """Baseline, bounds, retention and state are the tank's, by the formulas of its docstring."""
    flow = np.array([[0.0, 10.0, 40.0], [0.0, 10.0, 0.0]])  # l/h, two hourly slots, cycled
    pop = tanks(3, draw_profile_l_per_h=flow, temperature_c=[52.0, 50.0, 56.0])
    horizon = Horizon(1800, 1800, 4)  # half hours from 00:30: slots 0, 1, 1, 0
    before = (pop.temperature_c.copy(), pop.on.copy())
    flex = pop.flexibility(horizon, [MILD] * 4)
    assert isinstance(pop, FlexiblePopulation)
    assert list(flex.ids) == list(pop.ids) and flex.baseline_kw.shape == (4, 3)
    litres = pop.period_draws_l(horizon)
    np.testing.assert_allclose(litres[:, 1], [5.0, 5.0, 5.0, 5.0])
    np.testing.assert_allclose(litres[:, 2], [20.0, 0.0, 0.0, 20.0])
    c = 189.0 * WATER_KJ_PER_L_K / 3600.0  # kWh/K
    g = litres * WATER_KJ_PER_L_K / 1800.0  # kW/K
    np.testing.assert_allclose(flex.baseline_kw, 0.0011 * 32.0 + g * 37.0)
    np.testing.assert_allclose(flex.power_max_kw - flex.power_min_kw, 4.5)
    np.testing.assert_allclose(flex.energy_min_kwh, -5.0 * c)
    np.testing.assert_allclose(flex.energy_max_kwh, 5.0 * c)
    np.testing.assert_allclose(flex.initial_energy_kwh, c * np.array([0.0, -2.0, 4.0]))
    decay = (0.0011 + g.mean(axis=0)) / (189.0 * WATER_KJ_PER_L_K)
    np.testing.assert_allclose(flex.retention, np.exp(-decay * 1800.0))
    np.testing.assert_array_equal(flex.charge_efficiency, 1.0)
    for was, now in zip(before, (pop.temperature_c, pop.on), strict=True):
        np.testing.assert_array_equal(was, now)


def test_water_heater_battery_is_exact_under_a_constant_draw():
    """A constant draw: following the schedule lands each tank where its battery says."""
    pop = tanks(4, draw_profile_l_per_h=np.full((1, 4), 12.0), temperature_c=[52, 48, 55, 52.5])
    horizon = Horizon(0, 900, 8)
    price = np.array([0.3, 0.1, 0.1, 0.3, 0.3, 0.1, 0.4, 0.1])
    best = pop.best_response(price, horizon, [MILD] * 8)
    check_schedule(best, best.flexibility)
    c = pop.capacity_kj_per_k / 3600.0
    a_h = -np.log(best.flexibility.retention)  # (UA + G) h / C
    baseline = best.flexibility.baseline_kw
    bound = np.zeros(4)
    for t in range(8):
        respond_with_energy(pop, horizon, t, best.power_kw[t])
        res = pop.step(int(horizon.starts_s[t]), 900, MILD)
        # Exact but for the power's shape within a period (element first, then off): the tank
        # weighs u(s) by exp(-a (h - s)), the battery by 1, so each period adds at most
        # a h times the integral of |u| = |P - P0| to the state's error; at a band edge the
        # tank's must-run makes that error up in energy.
        bound += a_h * (best.power_kw[t] + baseline[t]) * 0.25
        assert (np.abs(res.energy_kwh - best.power_kw[t] * 0.25) <= bound).all()
        stored = c * (pop.temperature_c - pop.setpoint_c)
        assert (np.abs(stored - best.energy_kwh[t]) <= bound).all()
    assert bound.max() < 0.15 and np.abs(stored - best.energy_kwh[-1]).max() < 0.01  # kWh


def test_water_heater_best_response_dispatched_on_stepped_tanks():
    """300 sampled tanks, a day of 15-minute periods at time-of-use prices (docstring figures)."""
    pop = WaterHeaterPopulation.sample(300, np.random.default_rng(1))
    horizon = Horizon(0, 900, 96)
    weather = [MILD] * 96
    price = tou_prices(horizon)
    before = copy.deepcopy(pop)
    best = pop.best_response(price, horizon, weather)
    flex = best.flexibility
    check_schedule(best, flex)
    base_cost = (price[:, None] * flex.baseline_kw * horizon.period_h).sum(axis=0)
    assert (best.cost <= base_cost + 1e-9).all()
    # the heat is moved out of the evening peak
    peak = price == 0.40
    assert best.power_kw[peak].sum() < 0.5 * flex.baseline_kw[peak].sum()
    # no side effect: the population steps exactly as an untouched copy does
    np.testing.assert_array_equal(pop.temperature_c, before.temperature_c)
    np.testing.assert_array_equal(
        pop.step(0, 60, MILD).energy_kwh, before.step(0, 60, MILD).energy_kwh
    )
    pop = before
    planned = best.power_kw.sum(axis=1) * horizon.period_h
    drawn = np.zeros(96)
    for t in range(96):
        respond_with_energy(pop, horizon, t, best.power_kw[t])
        for k in range(3):
            drawn[t] += pop.step(int(horizon.starts_s[t]) + 300 * k, 300, MILD).energy_kwh.sum()
            temp = pop.temperature_c
            assert (temp >= pop.comfort_min_c - 1e-6).all()
            assert (temp <= pop.comfort_max_c + 1e-6).all()
    miss = (drawn - planned) / horizon.period_h / pop.element_kw.sum()  # of the power range
    assert np.sqrt(np.mean(miss**2)) < 0.01 and np.abs(miss).max() < 0.02
    assert abs(drawn.sum() / planned.sum() - 1.0) < 0.04


def test_water_heater_flat_prices_cost_no_more_than_the_baseline():
    pop = WaterHeaterPopulation.sample(40, np.random.default_rng(2))
    horizon = Horizon(3600, 1800, 12)
    best = pop.best_response(np.full(12, 0.2), horizon, [MILD] * 12)
    check_schedule(best, best.flexibility)
    base = (0.2 * best.flexibility.baseline_kw * horizon.period_h).sum(axis=0)
    assert (best.cost <= base + 1e-9).all()
    assert (best.power_kw >= -1e-9).all() and (best.power_kw <= pop.element_kw + 1e-9).all()


def test_water_heater_outside_its_band_gets_its_fastest_way_back():
    """A cold and a hot tank (and one whose draw beats its element) still get a schedule."""
    profile = np.array([[0.0, 0.0, 150.0]])  # l/h: 150 l/h needs about 6.4 kW at the setpoint
    pop = tanks(3, draw_profile_l_per_h=profile, temperature_c=[40.0, 62.0, 52.0])
    horizon = Horizon(0, 900, 12)
    best = pop.best_response(np.full(12, 0.1), horizon, [MILD] * 12)
    flex = best.flexibility
    check_schedule(best, flex)
    assert flex.baseline_kw[0, 2] > pop.element_kw[2] and (flex.power_max_kw[:, 2] < 0).all()
    assert (best.power_kw <= pop.element_kw + 1e-9).all() and (best.power_kw >= -1e-9).all()
    c = pop.capacity_kj_per_k / 3600.0
    # the cold tank heats at once, at full power, and is back in its band in the next period
    np.testing.assert_allclose(best.power_kw[0, 0], 4.5)
    assert (best.energy_kwh[1:, 0] >= -5.0 * c[0] - 1e-6).all()
    # the hot one stays off: it cools only through its standby loss (no draw), so slowly that
    # it is still above its band at the end; its bound is that trajectory
    np.testing.assert_allclose(best.power_kw[:, 1], 0.0, atol=1e-6)
    coolest = c[1] * 10.0 * flex.retention[1] ** np.arange(1, 13) - flex.baseline_kw[
        0, 1
    ] * 0.25 * np.cumsum(flex.retention[1] ** np.arange(12))
    np.testing.assert_allclose(best.energy_kwh[:, 1], coolest, atol=1e-6)
    np.testing.assert_allclose(flex.energy_max_kwh[:, 1], coolest)
    # the drained one can only run, and still falls
    np.testing.assert_allclose(best.power_kw[:, 2], 4.5)
    assert (np.diff(best.energy_kwh[:, 2]) < 0).all()
    # the bounds of a tank inside its band are its band
    inside = tanks(1, temperature_c=52.0).flexibility(horizon, [MILD] * 12)
    np.testing.assert_allclose(inside.energy_min_kwh, -5.0 * c[0])


def test_empty_water_heater_population():
    pop = WaterHeaterPopulation.sample(0, np.random.default_rng(0))
    best = pop.best_response(np.ones(3), Horizon(0, 900, 3), [MILD] * 3)
    assert best.power_kw.shape == (3, 0)


def test_water_heater_refuses_bad_inputs():
    pop = tanks(2)
    horizon = Horizon(0, 900, 4)
    with pytest.raises(ValidationError, match="weather"):
        pop.flexibility(horizon, [MILD] * 3)
    with pytest.raises(ValidationError, match="horizon"):
        pop.flexibility((0, 900, 4), [MILD] * 4)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="horizon"):
        pop.period_draws_l("today")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="prices_per_kwh"):
        pop.best_response(np.ones(5), horizon, [MILD] * 4)
    with pytest.raises(ValidationError, match="prices_per_kwh"):
        pop.best_response([0.1, np.nan, 0.1, 0.1], horizon, [MILD] * 4)
    with pytest.raises(ValidationError, match="weather"):
        pop.best_response(np.ones(4), horizon, [MILD, MILD, MILD, None])  # type: ignore[list-item]


# ---------------------------------------------------------------------------- heat pumps


def settled_heat_pumps(n: int, seed: int) -> tuple[HeatPumpPopulation, int]:
    pop = HeatPumpPopulation.sample(n, np.random.default_rng(seed), outdoor_temperature_c=-3.0)
    t = 0
    for _ in range(180):
        pop.step(t, 60, COLD)
        t += 60
    return pop, t


def test_heat_pump_battery_is_its_houses_at_staffell_cop():
    pop, t = settled_heat_pumps(30, seed=3)
    ramp = [WeatherSample(-3.0 + 1.0 * k) for k in range(4)]
    horizon = Horizon(t, 900, 4)
    flex = pop.flexibility(horizon, ramp)
    assert isinstance(pop, FlexiblePopulation)
    assert list(flex.ids) == list(pop.ids) and list(flex.ids) != list(pop.houses.ids)
    h = pop.houses
    for k, w in enumerate(ramp):
        # the heat that holds the setpoint (no sun) over Staffell's COP, fan included
        load = h.ua_kw_per_k * (h.setpoint_c - w.temperature_c) - h.internal_gain_kw
        capacity = h.heating_capacity_kw
        electric = capacity / staffell_ashp_cop(h.supply_temperature_c, w.temperature_c)
        electric = electric + h.fan_power_kw
        heat = capacity + h.fan_heatgain_fraction * h.fan_power_kw  # the fan's heat helps
        np.testing.assert_allclose(
            flex.baseline_kw[k], np.clip(load * electric / heat, 0.0, electric), rtol=1e-9
        )
        assert (flex.baseline_kw[k] + flex.power_max_kw[k] <= electric + 1e-9).all()
    assert (np.diff(flex.baseline_kw.sum(axis=1)) < 0).all()  # milder: less heat, better COP
    same = h.flexibility(horizon, ramp)
    np.testing.assert_array_equal(flex.energy_max_kwh, same.energy_max_kwh)


def test_heat_pump_best_response_dispatched_on_stepped_houses():
    n, periods, per = 100, 8, 10
    pop, t = settled_heat_pumps(n, seed=5)
    horizon = Horizon(t, per * 60, periods)
    weather = [COLD] * periods
    before = copy.deepcopy(pop)
    price = np.array([0.1, 0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.1])
    best = pop.best_response(price, horizon, weather)
    flex = best.flexibility
    check_schedule(best, flex)
    base_cost = (price[:, None] * flex.baseline_kw * horizon.period_h).sum(axis=0)
    assert (best.cost <= base_cost + 1e-9).all()
    flat = pop.best_response(np.full(periods, 0.1), horizon, weather)
    check_schedule(flat, flex)
    assert (flat.cost <= (0.1 * flex.baseline_kw * horizon.period_h).sum(axis=0) + 1e-9).all()
    plan = best.power_kw.sum(axis=1)
    assert plan[3:5].sum() < flex.baseline_kw[3:5].sum()
    np.testing.assert_array_equal(
        pop.step(t, 60, COLD).energy_kwh, before.step(t, 60, COLD).energy_kwh
    )
    pop, now = before, t + 60
    span = (flex.power_max_kw - flex.power_min_kw).sum(axis=1).mean()
    for p in range(periods):
        delivered = np.zeros(n)
        for m in range(per):
            follow_schedule(
                pop.houses,
                best.power_kw[p],
                delivered_kwh=delivered,
                elapsed_s=m * 60,
                step_s=60,
                weather=COLD,
            )
            delivered += pop.step(now, 60, COLD).energy_kwh
            now += 60
            ta = pop.air_temperature_c
            h = pop.houses
            assert (ta >= h.comfort_min_c - 1e-6).all() and (ta <= h.comfort_max_c + 1e-6).all()
        drawn = delivered.sum() / horizon.period_h
        assert abs(drawn - plan[p]) < 0.03 * span  # within 3 % of the power range


def test_heat_pump_just_sampled_houses_are_feasible():
    """Houses sampled anywhere in (or out of) their limits get their fastest way back."""
    pop = HeatPumpPopulation.sample(60, np.random.default_rng(8), outdoor_temperature_c=-3.0)
    state = (pop.air_temperature_c.copy(), pop.houses.mass_temperature_c.copy())
    best = pop.best_response(np.full(6, 0.2), Horizon(0, 900, 6), [COLD] * 6)
    check_schedule(best, best.flexibility)
    np.testing.assert_array_equal(state[0], pop.air_temperature_c)
    np.testing.assert_array_equal(state[1], pop.houses.mass_temperature_c)


def test_heat_pump_refuses_bad_inputs():
    pop = HeatPumpPopulation.sample(3, np.random.default_rng(6))
    horizon = Horizon(0, 900, 4)
    with pytest.raises(ValidationError, match="weather"):
        pop.flexibility(horizon, [COLD] * 3)
    with pytest.raises(ValidationError, match="fast_share"):
        pop.flexibility(horizon, [COLD] * 4, fast_share=1.0)
    with pytest.raises(ValidationError, match="prices_per_kwh"):
        pop.best_response(np.ones((4, 2)), horizon, [COLD] * 4)
