import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.hvac import (
    COOLING,
    HEATING,
    EtpCoefficients,
    HvacPopulation,
    etp_advance,
    etp_eigenvalues,
)
from transactive.devices.ramp import ramp_bid_price, ramp_setpoint
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
INTERVAL = MarketInterval(start_s=0, duration_s=300)
HOT = WeatherSample(temperature_c=33.0, ghi_w_per_m2=400.0)


def one_house(n: int = 1, **overrides: Any) -> HvacPopulation:
    args: dict[str, Any] = {
        "ua_kw_per_k": 0.2,
        "mass_coupling_kw_per_k": 3.0,
        "air_capacity_kj_per_k": 1500.0,
        "mass_capacity_kj_per_k": 12000.0,
        "setpoint_c": 23.0,
        "comfort_min_c": 21.0,
        "comfort_max_c": 25.0,
        "cooling_capacity_kw": 8.0,
        "heating_capacity_kw": 8.0,
        "internal_gain_kw": 0.6,
        "solar_aperture_m2": 4.0,
        "deadband_c": 1.0,
    }
    args.update(overrides)
    arrays: dict[str, Any] = {k: np.broadcast_to(v, (n,)) for k, v in args.items()}
    return HvacPopulation(**arrays)


def day_weather(hour: float) -> WeatherSample:
    temp = 27.0 + 6.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    ghi = max(0.0, 800.0 * np.sin(np.pi * (hour - 6.0) / 12.0)) if 6 <= hour <= 18 else 0.0
    return WeatherSample(temperature_c=float(temp), ghi_w_per_m2=float(ghi))


def test_population_implements_the_protocol():
    assert isinstance(HvacPopulation.sample(3, np.random.default_rng(0)), Population)


def test_closed_form_equals_the_matrix_exponential():
    pop = HvacPopulation.sample(6, np.random.default_rng(1))
    ua, hm = pop.ua_kw_per_k, pop.mass_coupling_kw_per_k
    ca, cm = pop.air_capacity_kj_per_k, pop.mass_capacity_kj_per_k
    r1, r2 = etp_eigenvalues(ua, hm, ca, cm)
    coefficients = EtpCoefficients.of(ua, hm, ca, cm)
    ta0, tm0 = np.full(6, 24.0), np.full(6, 26.5)
    q_on, q_air, q_mass, t_out, dt = -6.0, 0.3, 0.5, 33.0, 900.0
    never = np.full(6, 1e9)
    res = etp_advance(
        coefficients=coefficients, on=np.ones(6, bool),
        air_temperature_c=ta0, mass_temperature_c=tm0,
        q_on_kw=np.full(6, q_on), q_air_kw=np.full(6, q_air), q_mass_kw=np.full(6, q_mass),
        outdoor_c=t_out, dt_s=dt, switch_on_c=never, switch_off_c=-never,
        direction=np.ones(6),
    )  # fmt: skip
    for i in range(6):
        a = np.array([[-(ua[i] + hm[i]) / ca[i], hm[i] / ca[i]], [hm[i] / cm[i], -hm[i] / cm[i]]])
        b = np.array([(ua[i] * t_out + q_air + q_on) / ca[i], q_mass / cm[i]])
        steady = -np.linalg.solve(a, b)
        x = steady + expm(a * dt) @ (np.array([ta0[i], tm0[i]]) - steady)
        np.testing.assert_allclose(
            [res.air_temperature_c[i], res.mass_temperature_c[i]], x, rtol=0, atol=1e-9
        )
        np.testing.assert_allclose(sorted(np.linalg.eigvals(a)), [r1[i], r2[i]], rtol=1e-10)
    np.testing.assert_allclose(res.on_time_s, dt)


def test_switching_time_matches_an_event_driven_ode_solver():
    pop = one_house(air_temperature_c=23.45, mass_temperature_c=23.8, on=True)
    weather = WeatherSample(temperature_c=30.0, ghi_w_per_m2=300.0)
    result = pop.step(0, 600, weather)
    # Independent solution: scipy's RK45 with an event at the switch-off threshold (22.5 °C).
    cap = float(pop.thermal_capacity_kw(30.0)[0])
    solar = 4.0 * 0.3

    def rhs(q_hvac: float) -> Any:
        def f(_t, x):
            qa = q_hvac + 0.5 * 0.6 + 0.5 * solar
            qm = 0.5 * 0.6 + 0.5 * solar
            return [
                (0.2 * (30.0 - x[0]) + 3.0 * (x[1] - x[0]) + qa) / 1500.0,
                (3.0 * (x[0] - x[1]) + qm) / 12000.0,
            ]

        return f

    def off_event(_t, x):
        return x[0] - 22.5

    off_event.terminal = True  # type: ignore[attr-defined]
    first = solve_ivp(rhs(-cap), (0, 600), [23.45, 23.8], events=off_event, rtol=1e-10, atol=1e-10)
    t_switch = float(first.t_events[0][0])
    second = solve_ivp(rhs(0.0), (t_switch, 600), first.y[:, -1], rtol=1e-10, atol=1e-10)
    assert not pop.on[0]
    np.testing.assert_allclose(pop.air_temperature_c[0], second.y[0, -1], atol=1e-6)
    np.testing.assert_allclose(pop.mass_temperature_c[0], second.y[1, -1], atol=1e-6)
    electric = float(pop.electric_power_kw(30.0)[0])
    np.testing.assert_allclose(result.energy_kwh[0], electric * t_switch / 3600.0, rtol=1e-6)


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_energy_balance_over_a_day(mode):
    pop = HvacPopulation.sample(40, np.random.default_rng(2), mode=mode)
    shift = 0.0 if mode == COOLING else -22.0
    stored0 = pop.stored_heat_kwh()
    air = [pop.air_temperature_c.copy()]
    outdoor = []
    for minute in range(24 * 60):
        w = day_weather(minute / 60.0)
        w = WeatherSample(w.temperature_c + shift, w.ghi_w_per_m2)
        outdoor.append(w.temperature_c)
        pop.step(60 * minute, 60, w)
        air.append(pop.air_temperature_c.copy())
    # heat in (HVAC, gains) - heat lost through the envelope = heat stored
    residual = (
        pop.heat_hvac_kwh + pop.heat_gains_kwh - pop.heat_envelope_loss_kwh
        - (pop.stored_heat_kwh() - stored0)
    )  # fmt: skip
    scale = np.abs(pop.heat_hvac_kwh).max()
    assert np.abs(residual).max() < 1e-9 * scale
    # the envelope loss agrees with a trapezoid rule over the recorded air temperatures
    a = np.array(air)
    mean_air = 0.5 * (a[1:] + a[:-1])
    trapezoid = pop.ua_kw_per_k * ((mean_air - np.array(outdoor)[:, None]).sum(axis=0)) / 60.0
    np.testing.assert_allclose(pop.heat_envelope_loss_kwh, trapezoid, rtol=0.01)


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_electric_energy_times_cop_is_the_heat_moved(mode):
    outdoor = 31.0 if mode == COOLING else 2.0
    pop = HvacPopulation.sample(30, np.random.default_rng(3), mode=mode)
    w = WeatherSample(outdoor, ghi_w_per_m2=500.0, relative_humidity=0.6)
    energy = np.sum([pop.step(60 * k, 60, w).energy_kwh for k in range(120)], axis=0)
    assert (energy > 0).all() and (pop.fan_power_kw > 0).all()
    # The compressor's electric energy times its COP is the heat it moves, sensible + latent
    # (GridLAB-D house_e: the grid sees capacity / COP, of which only the sensible share cools
    # the air); the fan's electric energy is accounted apart and its heat enters the air.
    compressor = energy - pop.electric_fan_kwh
    sensible = -pop.direction * (pop.heat_hvac_kwh - pop.heat_fan_kwh)
    moved = pop.cop(outdoor) * compressor
    np.testing.assert_allclose(sensible + pop.heat_latent_kwh, moved, rtol=1e-12)
    np.testing.assert_allclose(pop.heat_fan_kwh, pop.fan_heatgain_fraction * pop.electric_fan_kwh)
    # the fan runs exactly when the compressor does: fan energy / fan power = compressor energy /
    # compressor power (the same on-time)
    on_h = compressor / (pop.thermal_capacity_kw(outdoor) / pop.cop(outdoor))
    np.testing.assert_allclose(pop.electric_fan_kwh, pop.fan_power_kw * on_h, rtol=1e-12)
    if mode == COOLING:  # GridLAB-D's humidity-dependent split of the coil's heat
        llf = pop.latent_load_fraction
        shr = 1.0 / (1.1 + llf / (1.0 + np.exp(4.0 - 10.0 * 0.6)))
        np.testing.assert_allclose(pop.heat_latent_kwh, (1.0 - shr) * moved, rtol=1e-12)
        assert (pop.heat_latent_kwh > 0.1 * moved).all()
    else:
        assert (pop.heat_latent_kwh == 0).all()


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_thermostat_keeps_its_deadband_without_a_market(mode):
    pop = HvacPopulation.sample(100, np.random.default_rng(4), mode=mode)
    outdoor = 34.0 if mode == COOLING else -2.0
    low = pop.setpoint_c - pop.deadband_c / 2 - 1e-6
    high = pop.setpoint_c + pop.deadband_c / 2 + 1e-6
    switches = np.zeros(100)
    power = []
    for minute in range(6 * 60):
        before = pop.on.copy()
        power.append(pop.step(60 * minute, 60, WeatherSample(outdoor, ghi_w_per_m2=200.0)).power_kw)
        switches += before != pop.on
        assert np.all((pop.air_temperature_c >= low) & (pop.air_temperature_c <= high))
    duty = np.array(power).mean(axis=0) / pop.electric_power_kw(outdoor)
    assert (switches >= 4).all()  # every house cycles
    assert ((duty > 0.05) & (duty < 0.95)).all()


@settings(max_examples=50, deadline=None)
@given(
    mean=st.floats(0.0, 0.5),
    std=st.floats(0.0, 0.2),
    cap=st.floats(0.6, 5.0),
    mode=st.sampled_from([COOLING, HEATING]),
)
def test_bids_are_monotone_in_temperature_and_within_floor_and_cap(mean, std, cap, mode):
    temps = np.linspace(15.0, 31.0, 81)
    pop = one_house(81, air_temperature_c=temps, mode=mode)
    stats = PriceStats(mean, std, cap, price_floor_per_kwh=0.0)
    bids = pop.bid(stats, INTERVAL, WeatherSample(30.0 if mode == COOLING else 0.0))
    prices, powers = bids.price_per_kwh, bids.power_kw
    assert ((prices >= 0.0) & (prices <= cap)).all()
    assert (np.diff(prices, axis=1) >= 0).all() and (np.diff(powers, axis=1) <= 0).all()
    np.testing.assert_array_equal(prices[:, -2:], cap)  # the must-run block at the cap
    # the points' prices are ramp prices of setpoints in the band, k = 2, half-band 2 K
    assert (prices[:, :-2] <= np.clip(mean + 2.0 * std, 0.0, cap) + 1e-12).all()
    assert (prices[:, :-2] >= np.clip(mean - 2.0 * std, 0.0, cap) - 1e-12).all()
    # cooling: a warmer house bids at least as much at every price; heating: a colder one
    grid = np.linspace(0.0, cap, 41)
    most = np.array([bids.bounds_at(p)[1] for p in grid])
    assert (np.diff(most, axis=1) * mode >= -1e-9).all()
    must, can = powers[:, -2], powers[:, 0]
    np.testing.assert_array_equal(powers[:, -3], must)  # the curve's last point: the must-run
    uncomfortable = temps > 25.0 if mode == COOLING else temps < 21.0
    comfortable = temps <= 21.0 if mode == COOLING else temps >= 25.0  # at or past the edge
    assert (must[uncomfortable] > 0).all()  # beyond the band it must run, at any price
    np.testing.assert_array_equal(can[comfortable], 0.0)
    assert (can[~comfortable] > 0).all()


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_a_price_brings_the_air_to_the_setpoint_it_shifts_the_house_to(mode):
    """The points: the band's edges and the base setpoint, each at its ramp price.

    At the mean price every house that can reach its base setpoint by the interval's end does
    (the base setpoint's point); the comfortable edge's point is all it can run towards that
    edge, the uncomfortable edge's its must-run; between, a lower price ends every house at
    least as far towards the comfortable edge.
    """
    pop = HvacPopulation.sample(300, np.random.default_rng(4), mode=mode)
    weather = HOT if mode == COOLING else WeatherSample(-2.0)
    for minute in range(40):
        pop.step(60 * minute, 60, weather)
    interval = MarketInterval(2400, 300)
    bids = pop.bid(STATS, interval, weather)
    mean, sigma = STATS.mean_per_kwh, STATS.std_per_kwh
    np.testing.assert_allclose(bids.price_per_kwh[:, 1], mean)
    k_comf = np.where(pop.direction > 0, pop.ramp_low, pop.ramp_high)
    k_unc = np.where(pop.direction > 0, pop.ramp_high, pop.ramp_low)
    np.testing.assert_allclose(bids.price_per_kwh[:, 0], np.maximum(mean - k_comf * sigma, 0.0))
    np.testing.assert_allclose(bids.price_per_kwh[:, 2], mean + k_unc * sigma)
    must, can = bids.power_kw[:, -2], bids.power_kw[:, 0]
    np.testing.assert_array_equal(bids.power_kw[:, 2], must)

    def respond_and_step(price: float) -> tuple[np.ndarray, np.ndarray]:
        houses = copy.deepcopy(pop)
        power = houses.respond(price, 0.5)
        for t in range(interval.start_s, interval.end_s, 60):
            houses.step(t, 60, weather)
        return power, houses.air_temperature_c

    power, air = respond_and_step(mean)
    reachable = (power > must + 1e-9) & (power < can - 1e-9)  # neither end of the curve
    assert reachable.sum() > 200  # most houses can reach their setpoint in five minutes
    np.testing.assert_allclose(air[reachable], pop.setpoint_c[reachable], atol=1e-5)
    # all it can towards the comfortable edge: run until it reaches it, at most the interval
    power, air = respond_and_step(0.0)
    np.testing.assert_allclose(power, can)
    assert (power <= pop.running_power_kw(weather) + 1e-9).all()
    assert ((air - pop.comfort_min_c >= -1e-6) & (pop.comfort_max_c - air >= -1e-6)).all()
    ends = [respond_and_step(p)[1] for p in np.linspace(0.0, 0.25, 11)]
    assert (np.diff(ends, axis=0) * mode >= -1e-9).all()  # dearer: warmer (cooling)


def test_a_falling_price_brings_houses_in_gradually():
    """Below the cap every curve is a line through its points: no block for a price to cross.

    The aggregate power rises continuously as the price falls, each house by its own setpoint
    and comfort settings, instead of all of them at their ramp prices at once.
    """
    pop = HvacPopulation.sample(400, np.random.default_rng(9))
    for minute in range(30):
        pop.step(60 * minute, 60, HOT)
    stats = PriceStats(0.10, 0.03, 1.0, price_floor_per_kwh=-1.0)
    bids = pop.bid(stats, MarketInterval(1800, 300), HOT)
    prices = np.linspace(0.0, 0.25, 251)  # steps of 1/1000 of the cap
    lo, hi = (np.array(b) for b in zip(*(bids.bounds_at(p) for p in prices), strict=True))
    np.testing.assert_allclose(lo, hi, atol=1e-9)  # no block below the cap
    assert (np.diff(hi, axis=0) <= 1e-9).all()
    # each house's power moves by a small part of its range per step: no jump (the two-block
    # curve of a ramp price jumped by all of it)
    span = bids.power_kw[:, 0] - bids.power_kw[:, -2]
    assert (span > 0).sum() > 300
    assert (np.abs(np.diff(hi, axis=0)) <= 0.25 * span + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(
    price=st.floats(0.0, 1.0),
    fill=st.floats(0.0, 1.0),
    at_bid=st.integers(-1, 29),
    seed=st.integers(0, 10),
)
def test_power_at_a_price_equals_the_curve_at_that_price(price, fill, at_bid, seed):
    pop = HvacPopulation.sample(30, np.random.default_rng(seed))
    bids = pop.bid(STATS, INTERVAL, HOT)
    if at_bid >= 0:  # a price exactly at a house's bid makes it (and its equals) marginal
        price = float(bids.price_per_kwh[at_bid, 0])
    power = pop.respond(price, fill)
    np.testing.assert_allclose(power, bids.power_at(price, fill), rtol=0, atol=1e-12)
    # over the interval, stepped at any step length, each house draws its curve's average power
    energy = np.sum([pop.step(t, 60, HOT).energy_kwh for t in range(0, 300, 60)], axis=0)
    drawn = energy * 3600 / 300
    must_run = bids.power_kw[:, -2]
    served = power >= must_run - 1e-12
    np.testing.assert_allclose(drawn[served], power[served], rtol=1e-6, atol=1e-6)
    # rationed below its must-run (at the cap), a house may not be able to draw so little: the
    # band's override keeps it running, but never past its must-run
    rationed = ~served
    assert (drawn[rationed] >= power[rationed] - 1e-6).all()
    assert (drawn[rationed] <= must_run[rationed] * (1 + 1e-6) + 1e-6).all()


def test_locational_prices_and_fill_per_device():
    pop = HvacPopulation.sample(5, np.random.default_rng(5))
    bids = pop.bid(STATS, INTERVAL, HOT)
    prices = bids.price_per_kwh[:, 0] + np.array([-0.01, 0.0, 0.01, 0.0, -0.02])
    fill = np.array([0.3, 0.25, 0.9, 0.75, 0.0])
    np.testing.assert_allclose(pop.respond(prices, fill), bids.power_at(prices, fill))


@settings(max_examples=80, deadline=None)
@given(temperature=st.floats(21.0, 25.0), std=st.floats(0.001, 0.3))
def test_setpoint_response_inverts_the_bid_price(temperature, std):
    args = (
        np.array([23.0, 23.0]), np.array([1.0, -1.0]), np.array([21.0, 21.0]),
        np.array([25.0, 25.0]), np.array([1.5, 1.5]), np.array([3.0, 3.0]), 0.1, std,
    )  # fmt: skip
    t = np.array([temperature, temperature])
    price = ramp_bid_price(t, *args)
    np.testing.assert_allclose(ramp_setpoint(price, *args), t, atol=1e-9)


def test_high_prices_raise_cooling_setpoints_and_save_energy():
    def run(price: float) -> tuple[HvacPopulation, float]:
        pop = HvacPopulation.sample(200, np.random.default_rng(6))
        w = WeatherSample(33.0, ghi_w_per_m2=400.0)
        energy = np.zeros(200)
        for k in range(12):  # an hour of 5-minute intervals
            pop.bid(STATS, MarketInterval(300 * k, 300), w)
            pop.respond(price, 0.0)
            for t in range(300 * k, 300 * (k + 1), 60):
                energy += pop.step(t, 60, w).energy_kwh
        return pop, float(energy.sum())

    cheap, cheap_kwh = run(STATS.mean_per_kwh - 2 * STATS.std_per_kwh)
    dear, dear_kwh = run(STATS.mean_per_kwh + 2 * STATS.std_per_kwh)
    assert (dear.thermostat_setpoint_c >= cheap.thermostat_setpoint_c).all()
    assert dear_kwh < 0.7 * cheap_kwh
    # the comfort band holds
    for pop in (cheap, dear):
        assert (pop.air_temperature_c <= pop.comfort_max_c + 1e-6).all()
        assert (pop.air_temperature_c >= pop.comfort_min_c - 1e-6).all()


def test_direct_command_holds_until_the_comfort_edge():
    pop = one_house(air_temperature_c=23.0, mass_temperature_c=23.0)
    pop.command([1.0])
    w = WeatherSample(30.0)
    lowest = []
    for minute in range(600):
        pop.step(60 * minute, 60, w)
        t = pop.air_temperature_c[0]
        assert 21.0 - 1e-6 <= t <= 25.0 + 1e-6
        lowest.append(t)
        if not pop.on[0]:
            break
    # it ran past the thermostat's deadband (22.5 °C) down to the band's edge, then stopped
    assert not pop.on[0]
    assert min(lowest) < 21.05


def test_bad_parameters_are_all_named():
    ua = [0.2, -0.1, 0.2, 0.2, 0.2]
    tmin = [21.0, 21.0, 21.0, 26.0, 21.0]
    cm = [12000.0, 12000.0, 12000.0, 12000.0, np.nan]
    with pytest.raises(ValidationError) as info:
        one_house(5, ua_kw_per_k=ua, comfort_min_c=tmin, mass_capacity_kj_per_k=cm)
    message = str(info.value)
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("ua_kw_per_k", (1,)) in found
    assert ("comfort_min_c", (3,)) in found
    assert ("mass_capacity_kj_per_k", (4,)) in found
    assert "ua_kw_per_k" in message and "entry 1" in message and "entry 3" in message
    assert "entry 4" in message


def test_other_bad_inputs_raise_validation_errors():
    with pytest.raises(ValidationError, match="has 2 values"):
        HvacPopulation(
            ua_kw_per_k=[0.2, 0.2, 0.2],
            mass_coupling_kw_per_k=[3.0, 3.0],
            air_capacity_kj_per_k=1500.0,
            mass_capacity_kj_per_k=12000.0,
            setpoint_c=23.0,
            comfort_min_c=21.0,
            comfort_max_c=25.0,
            cooling_capacity_kw=8.0,
        )
    pop = one_house(2)
    with pytest.raises(ValidationError, match="bid"):
        pop.respond(0.1, 0.0)
    pop.bid(STATS, INTERVAL, HOT)
    with pytest.raises(TypeError):
        pop.respond(0.1)  # type: ignore[call-arg]  # no silent default fill
    with pytest.raises(ValidationError, match="marginal_fill"):
        pop.respond(0.1, [0.5, 1.5])
    with pytest.raises(ValidationError, match="std_per_kwh"):
        pop.bid(PriceStats(0.1, -1.0, 1.0), INTERVAL, HOT)
    with pytest.raises(ValidationError, match="interval"):
        pop.bid(STATS, 300, HOT)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dt_s"):
        pop.step(0, 0, WeatherSample(20.0))
    with pytest.raises(ValidationError, match="time_s"):
        pop.step(-60, 60, WeatherSample(20.0))
    with pytest.raises(ValidationError, match="mode"):
        one_house(2, mode=[1, 0])


def test_cleared_market_allocation_is_what_the_houses_draw():
    pop = HvacPopulation.sample(400, np.random.default_rng(8))
    for minute in range(20):
        pop.step(60 * minute, 60, WeatherSample(33.0))
    interval = MarketInterval(1200, 300)
    bids = pop.bid(STATS, interval, WeatherSample(33.0))
    rating = 0.4 * float(bids.power_kw[:, 0].sum())  # a congested feeder: the houses set the price
    result = clear(bids, price_cap=STATS.price_cap_per_kwh, supply=Supply(0.05, rating))
    assert result.clearing_price > 0.05
    power = pop.respond(result.clearing_price, result.marginal_fill)
    np.testing.assert_allclose(power, result.allocation_kw, atol=1e-9)
    np.testing.assert_allclose(power.sum(), rating, rtol=1e-9)
    energy = np.sum(
        [pop.step(t, 30, WeatherSample(33.0)).energy_kwh for t in range(1200, 1500, 30)], axis=0
    )
    np.testing.assert_allclose(energy.sum() * 3600 / 300, rating, rtol=1e-6)


def test_modes_can_be_named() -> None:
    rng = np.random.default_rng(0)
    heating = HvacPopulation.sample(4, rng, mode="Heating")
    np.testing.assert_array_equal(heating.direction, -1.0)
    with pytest.raises(ValidationError, match="'warm'"):
        HvacPopulation.sample(4, rng, mode="warm")


@pytest.fixture(scope="module")
def warm_afternoon() -> HvacPopulation:
    pop = HvacPopulation.sample(1_000, np.random.default_rng(21))
    for minute in range(60):
        pop.step(60 * minute, 60, HOT)
    return pop


@pytest.mark.parametrize("binding", [False, True])
def test_interval_energy_is_the_allocation_ample_or_binding(warm_afternoon, binding):
    """Metered energy over the interval (stepped at 60 s) equals the cleared allocation."""
    pop = copy.deepcopy(warm_afternoon)
    stats = PriceStats(0.05, 0.02, 1.0)
    for k in range(3):
        interval = MarketInterval(3600 + 300 * k, 300)
        bids = pop.bid(stats, interval, HOT)
        wanted_at_supply_price = float(bids.bounds_at(0.05)[1].sum())
        rating = 0.8 * wanted_at_supply_price if binding else np.inf
        result = clear(bids, price_cap=1.0, supply=Supply(0.05, rating))
        assert (result.clearing_price > 0.05) == binding
        power = pop.respond(result.clearing_price, result.marginal_fill)
        energy = np.sum(
            [pop.step(t, 60, HOT).energy_kwh for t in range(interval.start_s, interval.end_s, 60)],
            axis=0,
        )
        allocated = power * 300 / 3600
        assert abs(energy.sum() / allocated.sum() - 1.0) < 0.03  # the target, in aggregate
        # and, on the model under the forecast weather, per house
        np.testing.assert_allclose(energy, allocated, rtol=1e-6, atol=1e-7)
        assert (pop.air_temperature_c <= pop.comfort_max_c + 1e-6).all()
        assert (pop.air_temperature_c >= pop.comfort_min_c - 1e-6).all()


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_one_hour_steps_switch_exactly_and_keep_the_band(mode):
    pop = HvacPopulation.sample(500, np.random.default_rng(22), mode=mode)
    fine = HvacPopulation.sample(500, np.random.default_rng(22), mode=mode)
    w = WeatherSample(34.0 if mode == COOLING else -3.0, ghi_w_per_m2=300.0)
    low = pop.setpoint_c - pop.deadband_c / 2 - 1e-6
    high = pop.setpoint_c + pop.deadband_c / 2 + 1e-6
    stored0 = pop.stored_heat_kwh()
    coarse_kwh = np.zeros(500)
    for hour in range(4):
        coarse_kwh += pop.step(3600 * hour, 3600, w).energy_kwh
        assert ((pop.air_temperature_c >= low) & (pop.air_temperature_c <= high)).all()
    fine_kwh = sum(fine.step(60 * m, 60, w).energy_kwh for m in range(240))
    # an exact solution does not depend on the step length
    np.testing.assert_allclose(pop.air_temperature_c, fine.air_temperature_c, atol=1e-5)
    np.testing.assert_allclose(coarse_kwh, fine_kwh, rtol=1e-6, atol=1e-6)
    residual = (
        pop.heat_hvac_kwh + pop.heat_gains_kwh - pop.heat_envelope_loss_kwh
        - (pop.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * np.abs(pop.heat_hvac_kwh).max()


def test_a_crossing_the_trajectory_leaves_again_is_found():
    # air cooler than a hot mass, HVAC off: the air warms past the threshold and then the mass
    # cools below it; an end-of-step check alone would miss the switch
    k = EtpCoefficients.of(
        np.array([0.2]), np.array([3.0]), np.array([1500.0]), np.array([12000.0])
    )
    res = etp_advance(
        coefficients=k, air_temperature_c=np.array([20.0]), mass_temperature_c=np.array([30.0]),
        on=np.array([False]), q_on_kw=np.array([-8.0]), q_air_kw=np.array([0.0]),
        q_mass_kw=np.array([0.0]), outdoor_c=0.0, dt_s=4 * 3600.0,
        switch_on_c=np.array([24.0]), switch_off_c=np.array([23.0]), direction=np.array([1.0]),
    )  # fmt: skip
    assert res.on_time_s[0] > 0


def test_an_empty_population_bids_responds_and_steps():
    pop = one_house(0)
    bids = pop.bid(STATS, INTERVAL, HOT)
    assert len(bids) == 0
    assert pop.respond(0.1, 0.0).shape == (0,)
    step = pop.step(0, 60, HOT)
    assert step.energy_kwh.shape == (0,) and step.ids is not None and step.ids.shape == (0,)


def test_curves_and_meter_readings_carry_the_ids():
    pop = one_house(3, ids=["a", "b", "c"])
    bids = pop.bid(STATS, INTERVAL, HOT)
    assert bids.ids is not None and list(bids.ids) == ["a", "b", "c"]
    pop.respond(0.1, 0.0)
    assert list(pop.step(0, 60, HOT).ids) == ["a", "b", "c"]  # type: ignore[arg-type]
