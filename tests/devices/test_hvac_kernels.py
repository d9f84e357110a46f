"""The HVAC population's numba kernels against its numpy reference (issue 17).

Every test runs the same houses twice, ``kernel="numba"`` and ``kernel="numpy"``, from the same
state, and compares. Tolerances, and why:

- bit for bit wherever no switching time or on-time is solved: the heat flows, the ramp prices,
  and the state and meters of every house that has no switching event inside a step (the
  kernels use numpy's own ``exp(r dt)`` for a whole step and keep numpy's order of operations);
- where a switching time is solved (bracketed Newton iteration in both, stopped when the
  bracket or the step is below 1e-6 s, so each is within about 1e-6 s of the root), the C
  library's ``exp`` that the kernels call and numpy's SIMD one differ in the last bit, which can
  move the iterate at which that test stops: the two switching instants agree within a few
  1e-6 s per event, so over a few steps temperatures within ``ATOL_C`` = 1e-7 K (the air moves
  at most a few mK/s), energies within ``ATOL_KWH`` = 1e-7 kWh (10 kW for 1e-5 s is 3e-8 kWh),
  a schedule's switch-off instants within 1e-5 s, bid powers within 1e-6 kW (the bid
  setpoints' on-times are found to 1e-3 s in both, by the same iterations).

Small populations run each kernel's one-core build; the parallel builds (what populations of
``_kernels.PARALLEL_MIN_ELEMENTS`` houses and more run, and ``step_many`` from that many
house-steps) are compared too, with that threshold lowered, against the same tolerances.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from tests.peers.gridlabd import random_houses
from transactive.data import load_tmy3
from transactive.devices import _hvac_kernels, _kernels, hvac
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.devices.heat_pump import HeatPumpPopulation
from transactive.devices.hvac import (
    COOLING,
    HEATING,
    HvacPopulation,
    _mean_wall_irradiance_w_per_m2,
    wall_irradiance_w_per_m2,
)
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

ATOL_C = 1e-7
ATOL_KWH = 1e-7
STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
SUNNY = WeatherSample(
    temperature_c=32.0,
    ghi_w_per_m2=600.0,
    dni_w_per_m2=500.0,
    dhi_w_per_m2=150.0,
    solar_zenith_deg=40.0,
    solar_azimuth_deg=200.0,
    relative_humidity=0.6,
)
COLD = WeatherSample(temperature_c=-2.0, ghi_w_per_m2=200.0, relative_humidity=0.8)
STATE = ("air_temperature_c", "mass_temperature_c", "duty_pu")
ACCOUNTS = (
    "heat_hvac_kwh",
    "heat_latent_kwh",
    "heat_fan_kwh",
    "electric_fan_kwh",
    "heat_gains_kwh",
    "heat_envelope_loss_kwh",
)


def twins(pop: HvacPopulation) -> tuple[HvacPopulation, HvacPopulation]:
    """The population with the kernels and a deep copy with the numpy reference."""
    assert pop.kernel == "numba"
    reference = copy.deepcopy(pop)
    reference.kernel = "numpy"
    return pop, reference


def mixed(n: int, seed: int) -> HvacPopulation:
    """Cooling and heating houses interleaved (both branches of every kernel in one call)."""
    rng = np.random.default_rng(seed)
    cool = HvacPopulation.sample(n, rng, mode=COOLING)
    heat = HvacPopulation.sample(n, rng, mode=HEATING)
    args = cool._constructor_arguments()
    other = heat._constructor_arguments()
    joined: dict[str, object] = {}
    for name, value in args.items():
        if isinstance(value, np.ndarray):
            joined[name] = np.concatenate([value, other[name]]) if name != "ids" else None
        else:
            joined[name] = value
    joined["ids"] = None
    return HvacPopulation(**joined)  # type: ignore[arg-type]


def assert_same_state(a: HvacPopulation, b: HvacPopulation) -> None:
    for name in STATE:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=ATOL_C)
    np.testing.assert_array_equal(a.on, b.on)
    for name in ACCOUNTS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=ATOL_KWH)


@pytest.fixture
def parallel_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kernel call takes its parallel build, whatever the population's size."""
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_ELEMENTS", 1)


def quiet_houses(pop: HvacPopulation, weather: WeatherSample, dt_s: int) -> np.ndarray:
    """The houses that have no switching event in the next plain step (numpy reference)."""
    ref = copy.deepcopy(pop)
    ref.kernel = "numpy"
    heat = ref.heat_inputs(weather)
    _, _, _, on_time, _ = ref._advance(
        slice(None), ref.air_temperature_c, ref.mass_temperature_c, ref.on, ref.duty_pu,
        ref.guard_only, heat, float(weather.temperature_c), 0.0, float(dt_s), None,
    )  # fmt: skip
    return np.asarray((on_time == 0.0) | (on_time == float(dt_s)))


# ---------------------------------------------------------------------------- heat flows


@pytest.mark.parametrize("weather", [SUNNY, COLD])
def test_heat_inputs_are_the_reference_bit_for_bit(weather: WeatherSample) -> None:
    fast, ref = twins(mixed(300, 1))
    a, b = fast.heat_inputs(weather), ref.heat_inputs(weather)
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_wall_irradiance_of_a_day_at_once_is_the_per_sample_one() -> None:
    day = load_tmy3("723170TYA.CSV", step_s=600, start_day=190, days=1)
    for model in ("gridlabd", "isotropic"):
        at_once = _mean_wall_irradiance_w_per_m2(
            day.solar_zenith_deg, day.solar_azimuth_deg, day.dni_w_per_m2, day.dhi_w_per_m2,
            day.ghi_w_per_m2, model,
        )  # fmt: skip
        each = [float(np.mean(wall_irradiance_w_per_m2(w, model))) for w in day]
        assert np.count_nonzero(at_once) > 0
        np.testing.assert_allclose(at_once, each, rtol=1e-14, atol=1e-12)


# ---------------------------------------------------------------------------- physics step


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dt_s", [60, 300, 3600])
def test_plain_steps_match_the_reference(seed: int, dt_s: int) -> None:
    """Thermostats on their own: cooling and heating, latent load, steps of 1 min to 1 h."""
    fast, ref = twins(mixed(400, seed))
    weathers = (SUNNY, COLD)
    switched = 0
    for k in range(6):
        w = weathers[k % 2]
        quiet = quiet_houses(fast, w, dt_s)
        switched += int(np.count_nonzero(~quiet))
        a = fast.step(k * dt_s, dt_s, w)
        b = ref.step(k * dt_s, dt_s, w)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=ATOL_KWH)
        np.testing.assert_array_equal(a.power_kw, a.energy_kwh * 3600.0 / dt_s)
        # no event inside the step: the very same numbers
        np.testing.assert_array_equal(a.energy_kwh[quiet], b.energy_kwh[quiet])
        assert_same_state(fast, ref)
    assert switched > 50  # the comparison covers switching inside steps, not only quiet houses


def test_a_house_that_switches_several_times_in_one_step() -> None:
    """One hour steps of a small, tight house: several cycles inside each step."""
    pop = HvacPopulation(
        ua_kw_per_k=[0.3, 0.25], mass_coupling_kw_per_k=3.0, air_capacity_kj_per_k=800.0,
        mass_capacity_kj_per_k=9000.0, setpoint_c=[23.0, 20.0], comfort_min_c=[21.0, 18.0],
        comfort_max_c=[25.0, 22.0], mode=[COOLING, HEATING], cooling_capacity_kw=9.0,
        heating_capacity_kw=9.0, internal_gain_kw=0.8, deadband_c=0.4,
    )  # fmt: skip
    fast, ref = twins(pop)
    for k, w in enumerate((SUNNY, COLD)):
        full_kwh = fast.running_power_kw(w)
        a, b = fast.step(k * 3600, 3600, w), ref.step(k * 3600, 3600, w)
        assert_same_state(fast, ref)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=ATOL_KWH)
        # the house whose weather it is cycled inside the hour: neither off nor on all of it
        working = k  # house 0 cools in the sun, house 1 heats in the cold
        share = a.energy_kwh[working] / full_kwh[working]
        assert 0.05 < share < 0.95


@pytest.mark.parametrize("seed", [3, 4])
def test_direct_control_matches_the_reference(seed: int) -> None:
    """``command``: the commanded state, overridden only at the band's edges."""
    fast, ref = twins(mixed(300, seed))
    rng = np.random.default_rng(seed)
    for k in range(8):
        if k % 3 == 0:
            order = rng.random(fast.n_devices) < 0.5
            fast.command(order)
            ref.command(order)
        w = SUNNY if k % 2 else COLD
        a, b = fast.step(k * 300, 300, w), ref.step(k * 300, 300, w)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=ATOL_KWH)
        assert_same_state(fast, ref)


# ---------------------------------------------------------------------------- market interval


@pytest.mark.parametrize("seed", [5, 6, 7])
@pytest.mark.parametrize(("price", "fill"), [(0.10, 0.5), (0.02, 1.0), (1.0, 0.3), (0.16, 0.0)])
def test_bid_respond_and_schedule_match_the_reference(seed: int, price: float, fill: float) -> None:
    """Bid curves, the response and the schedule the steps follow (band overrides included)."""
    fast, ref = twins(mixed(300, seed))
    for k in range(20):
        w = SUNNY if k < 10 else COLD
        fast.step(60 * k, 60, w)
        ref.step(60 * k, 60, w)
    interval = MarketInterval(1200, 300)
    for w in (SUNNY, COLD):
        a, b = fast.bid(STATS, interval, w), ref.bid(STATS, interval, w)
        np.testing.assert_array_equal(a.price_per_kwh, b.price_per_kwh)
        np.testing.assert_allclose(a.power_kw, b.power_kw, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert fast._plan is not None and ref._plan is not None
    np.testing.assert_array_equal(fast._plan.linear, ref._plan.linear)
    pa, pb = fast.respond(price, fill), ref.respond(price, fill)
    curves = fast._plan.curves
    np.testing.assert_allclose(pa, curves.power_at(price, fill), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(fast.thermostat_setpoint_c, ref.thermostat_setpoint_c)
    assert fast._schedule is not None and ref._schedule is not None
    np.testing.assert_allclose(fast._schedule.switch_s, ref._schedule.switch_s, rtol=0, atol=1e-5)
    # the schedule's switch-off falls inside the steps: 45 s steps cut it anywhere
    energy = np.zeros(fast.n_devices)
    for k in range(8):
        a_step = fast.step(1200 + 45 * k, 45, COLD)
        b_step = ref.step(1200 + 45 * k, 45, COLD)
        energy += a_step.energy_kwh
        np.testing.assert_allclose(a_step.energy_kwh, b_step.energy_kwh, rtol=0, atol=1e-7)
        np.testing.assert_allclose(fast.air_temperature_c, ref.air_temperature_c, atol=1e-6)
    assert [fast._schedule, ref._schedule] == [None, None]  # the interval is over
    assert energy.sum() > 0


def test_locational_prices_and_fills_per_house() -> None:
    fast, ref = twins(HvacPopulation.sample(200, np.random.default_rng(8)))
    fast.bid(STATS, MarketInterval(0, 300), SUNNY)
    ref.bid(STATS, MarketInterval(0, 300), SUNNY)
    rng = np.random.default_rng(9)
    price = rng.uniform(0.0, 0.3, 200)
    fill = rng.random(200)
    np.testing.assert_allclose(fast.respond(price, fill), ref.respond(price, fill), atol=1e-6)
    np.testing.assert_array_equal(fast.thermostat_setpoint_c, ref.thermostat_setpoint_c)


def test_heat_pumps_use_the_kernels_with_their_own_heat_flows() -> None:
    """The heat pump's houses (a subclass with Staffell's COP and a boiler) take the kernel
    with their heat flows passed in; bid, response and steps match the reference."""
    pumps = HeatPumpPopulation.sample(
        150, np.random.default_rng(10), hybrid_share=0.4, electricity_price_per_kwh=0.25
    )
    reference = copy.deepcopy(pumps)
    reference.houses.kernel = "numpy"
    assert pumps.houses.kernel == "numba"
    for k in range(5):
        a, b = pumps.step(60 * k, 60, COLD), reference.step(60 * k, 60, COLD)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=ATOL_KWH)
        np.testing.assert_allclose(a.gas_energy_kwh, b.gas_energy_kwh, rtol=0, atol=ATOL_KWH)
    interval = MarketInterval(300, 300)
    ca, cb = pumps.bid(STATS, interval, COLD), reference.bid(STATS, interval, COLD)
    np.testing.assert_allclose(ca.power_kw, cb.power_kw, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ca.price_per_kwh, cb.price_per_kwh)
    np.testing.assert_allclose(pumps.respond(0.12, 0.5), reference.respond(0.12, 0.5), atol=1e-6)
    for k in range(5):
        a, b = pumps.step(300 + 60 * k, 60, COLD), reference.step(300 + 60 * k, 60, COLD)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        pumps.houses.air_temperature_c, reference.houses.air_temperature_c, atol=1e-6
    )


# ---------------------------------------------------------------------------- many steps


def test_step_many_is_the_loop_of_steps_bit_for_bit() -> None:
    """A day of minute weather in one call: the same numbers as 1,440 ``step`` calls."""
    day = load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)
    many = HvacPopulation.sample(150, np.random.default_rng(11), outdoor_temperature_c=28.0)
    loop = copy.deepcopy(many)
    series = many.step_many(0, 60, day, record=True)
    step_energy, step_air = series.step_energy_kwh, series.step_air_temperature_c
    assert step_energy is not None and step_air is not None
    assert step_energy.shape == step_air.shape == (len(day), many.n_devices)
    energy = np.zeros(loop.n_devices)
    for k in range(len(day)):
        res = loop.step(60 * k, 60, day[k])
        energy += res.energy_kwh
        np.testing.assert_array_equal(step_energy[k], res.energy_kwh)
        np.testing.assert_array_equal(step_air[k], loop.air_temperature_c)
    np.testing.assert_array_equal(series.energy_kwh, energy)
    for name in (*STATE, *ACCOUNTS):
        np.testing.assert_array_equal(getattr(many, name), getattr(loop, name), err_msg=name)
    np.testing.assert_array_equal(many.on, loop.on)
    assert many.outdoor_temperature_c == loop.outdoor_temperature_c
    total = step_energy.sum(axis=1) * 60.0
    np.testing.assert_allclose(series.total_power_kw, total, rtol=1e-12)
    assert series.energy_kwh.sum() > 100.0  # a July day: the air conditioners work


def test_step_many_keeps_its_working_arrays_apart_and_never_copies_them() -> None:
    """The kernel's account scratch (reused between calls) is never an account, nor copied.

    Calls one after the other, with a dry run between, give what ``step`` calls give; a deep
    copy or a pickle of the population starts with no scratch.
    """
    import pickle  # noqa: PLC0415

    weather = [WeatherSample(temperature_c=31.0, ghi_w_per_m2=500.0)] * 3
    many = HvacPopulation.sample(300, np.random.default_rng(12), outdoor_temperature_c=28.0)
    loop = copy.deepcopy(many)
    for call in range(3):
        many.step_many(180 * call, 60, weather)
        many.step_many(180 * call + 180, 60, weather, dry_run=True)  # uses the scratch too
        for k in range(3):
            loop.step(180 * call + 60 * k, 60, weather[k])
        scratch = vars(many)["_scratch"].arrays
        assert scratch["accounts"].shape == (6, 300)
        for name in ACCOUNTS:
            account = getattr(many, name)
            assert not np.shares_memory(account, scratch["accounts"]), name
            np.testing.assert_array_equal(account, getattr(loop, name), err_msg=name)
    assert vars(copy.deepcopy(many))["_scratch"].arrays == {}
    assert vars(pickle.loads(pickle.dumps(many)))["_scratch"].arrays == {}


def test_step_many_follows_a_schedule_into_the_thermostat_and_matches_the_reference() -> None:
    fast, ref = twins(mixed(200, 12))
    for pop in (fast, ref):
        pop.bid(STATS, MarketInterval(120, 300), SUNNY)
        pop.respond(0.08, 0.5)
    weather = [SUNNY, COLD] * 5  # 10 steps of 50 s from 100 s: before, inside, after
    a = fast.step_many(100, 50, weather)
    b = ref.step_many(100, 50, weather)
    assert fast._schedule is None and ref._schedule is None
    np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=1e-7)
    np.testing.assert_allclose(a.total_power_kw, b.total_power_kw, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(fast.air_temperature_c, ref.air_temperature_c, atol=1e-6)
    np.testing.assert_array_equal(fast.on, ref.on)
    assert a.step_energy_kwh is None and a.step_air_temperature_c is None


def test_step_many_refuses_bad_weather_and_changes_nothing() -> None:
    pop = HvacPopulation.sample(20, np.random.default_rng(13))
    before = pop.air_temperature_c.copy()
    bad = [SUNNY, WeatherSample(temperature_c=30.0, ghi_w_per_m2=-5.0), SUNNY]
    with pytest.raises(ValidationError, match=r"ghi_w_per_m2.*sample 1"):
        pop.step_many(0, 60, bad)
    with pytest.raises(ValidationError, match="relative_humidity"):
        pop.step_many(0, 60, [WeatherSample(temperature_c=30.0, relative_humidity=1.5)])
    with pytest.raises(ValidationError, match="at least one sample"):
        pop.step_many(0, 60, [])
    with pytest.raises(ValidationError, match="dt_s"):
        pop.step_many(0, 0, [SUNNY])
    np.testing.assert_array_equal(pop.air_temperature_c, before)


# ---------------------------------------------------------------------------- parallel builds


@pytest.mark.usefixtures("parallel_builds")
@pytest.mark.parametrize("solar_model", hvac.SOLAR_MODELS)
def test_windows_of_a_series_step_as_their_samples_do(solar_model: str) -> None:
    """A ``WeatherSeries`` window reads the weather derived once for the whole series."""
    # a series of its own (load_tmy3 hands every caller the same one, derived fields and all)
    day = dataclasses.replace(load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1))
    houses = random_houses(120, np.random.default_rng(21))  # latent load, humidity read
    windows = HvacPopulation.from_gridlabd(houses, solar_model=solar_model)
    assert windows._latent_used()
    samples = copy.deepcopy(windows)
    for first in range(0, len(day), 37 * 5):  # every 37th window of five steps, day and night
        a = windows.step_many(60 * first, 60, day.window(first, 5), record=True)
        listed = [day[k] for k in range(first, first + 5)]
        b = samples.step_many(60 * first, 60, listed, record=True)
        np.testing.assert_array_equal(a.step_energy_kwh, b.step_energy_kwh)
        np.testing.assert_array_equal(a.step_air_temperature_c, b.step_air_temperature_c)
        for name in (*STATE, *ACCOUNTS):
            np.testing.assert_array_equal(getattr(windows, name), getattr(samples, name))
        assert windows.outdoor_temperature_c == samples.outdoor_temperature_c
    # derived once, on the whole series, under the model and the latent load's use
    assert list(day._derived) == [("hvac-weather", solar_model, True)]
    # a window of a window is the window of the whole series it lies in
    inner = day.window(600, 60).window(10, 5)
    assert inner._whole is day and inner._first == 610
    np.testing.assert_array_equal(inner.temperature_c, day.temperature_c[610:615])


def test_a_bad_sample_of_a_series_is_named_in_its_window_only() -> None:
    day = load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)
    ghi = day.ghi_w_per_m2.copy()
    ghi[702] = -1.0
    bad_day = dataclasses.replace(day, ghi_w_per_m2=ghi)
    pop = HvacPopulation.sample(30, np.random.default_rng(22))
    twin = copy.deepcopy(pop)
    # a window without the bad sample steps as its samples do
    a = pop.step_many(0, 60, bad_day.window(0, 5), record=True)
    b = twin.step_many(0, 60, [day[k] for k in range(5)], record=True)
    np.testing.assert_array_equal(a.step_energy_kwh, b.step_energy_kwh)
    before = pop.air_temperature_c.copy()
    with pytest.raises(ValidationError, match=r"ghi_w_per_m2.*sample 2"):
        pop.step_many(700 * 60, 60, bad_day.window(700, 5))
    np.testing.assert_array_equal(pop.air_temperature_c, before)


def test_the_parallel_builds_match_the_reference() -> None:
    """Steps, bid, response, scheduled steps and heat flows on the parallel builds, accounts too
    (numba's parallel loops lose writes made through a named tuple's attributes: the kernels
    must write only through plain tuples)."""
    fast, ref = twins(mixed(300, 21))
    for k in range(10):
        w = SUNNY if k % 2 else COLD
        a, b = fast.step(60 * k, 60, w), ref.step(60 * k, 60, w)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=ATOL_KWH)
        assert_same_state(fast, ref)
    interval = MarketInterval(600, 300)
    ca, cb = fast.bid(STATS, interval, SUNNY), ref.bid(STATS, interval, SUNNY)
    np.testing.assert_array_equal(ca.price_per_kwh, cb.price_per_kwh)
    np.testing.assert_allclose(ca.power_kw, cb.power_kw, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.respond(0.11, 0.4), ref.respond(0.11, 0.4), atol=1e-6)
    np.testing.assert_array_equal(fast.thermostat_setpoint_c, ref.thermostat_setpoint_c)
    for k in range(7):
        a, b = fast.step(600 + 45 * k, 45, SUNNY), ref.step(600 + 45 * k, 45, SUNNY)
        np.testing.assert_allclose(a.energy_kwh, b.energy_kwh, rtol=0, atol=1e-7)
    np.testing.assert_allclose(fast.heat_hvac_kwh, ref.heat_hvac_kwh, rtol=0, atol=1e-7)
    assert np.count_nonzero(fast.heat_envelope_loss_kwh) == fast.n_devices
    for field in ("q_air_kw", "q_on_kw", "electric_on_kw", "solar_gain_kw", "latent_on_kw"):
        np.testing.assert_array_equal(
            getattr(fast.heat_inputs(COLD), field), getattr(ref.heat_inputs(COLD), field)
        )


# ---------------------------------------------------------------------------- the switch itself


def test_the_kernels_constants_are_the_references() -> None:
    assert _hvac_kernels.NEWTON_ITERATIONS == hvac._NEWTON_ITERATIONS
    assert _hvac_kernels.ROOT_TOLERANCE_S == hvac._ROOT_TOLERANCE_S
    assert _hvac_kernels.SECONDS_PER_HOUR == hvac._SECONDS_PER_HOUR
    pop = HvacPopulation.sample(2, np.random.default_rng(0))
    assert all(isinstance(getattr(pop, name), np.ndarray) for name in _hvac_kernels.ACCOUNTS)


@pytest.mark.parametrize(
    "replace",
    [
        lambda pop: setattr(pop, "duty_pu", pop.duty_pu.astype(np.float32)),
        lambda pop: setattr(pop, "mass_temperature_c", pop.mass_temperature_c.astype(np.float32)),
        lambda pop: setattr(pop, "on", pop.on.astype(np.int8)),
        lambda pop: setattr(pop, "heat_gains_kwh", pop.heat_gains_kwh[::1].copy()[None, :]),
    ],
)
def test_a_state_the_kernels_cannot_read_takes_the_reference_path(replace: object) -> None:
    """A caller may replace a public state array by anything numpy reads; where the kernels
    cannot read it as it is (another dtype or shape), they step aside for the reference, which
    gives exactly its own numbers."""
    fast, ref = twins(HvacPopulation.sample(50, np.random.default_rng(15)))
    for pop in (fast, ref):
        replace(pop)  # type: ignore[operator]
    assert fast._kernel_inputs() is None
    for k in range(3):
        a, b = fast.step(60 * k, 60, SUNNY), ref.step(60 * k, 60, SUNNY)
        np.testing.assert_array_equal(a.energy_kwh, b.energy_kwh)
    np.testing.assert_array_equal(fast.air_temperature_c, ref.air_temperature_c)


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_an_empty_population_steps_bids_and_responds(kernel: str) -> None:
    pop = HvacPopulation.sample(0, np.random.default_rng(16))
    pop.kernel = kernel
    assert pop.step(0, 60, SUNNY).energy_kwh.shape == (0,)
    assert pop.bid(STATS, MarketInterval(60, 300), SUNNY).power_kw.shape[0] == 0
    assert pop.respond(0.1, 0.5).shape == (0,)
    assert pop.step_many(60, 60, [SUNNY, COLD]).total_power_kw.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_non_finite_inputs_are_refused_and_nothing_changes(kernel: str) -> None:
    pop = HvacPopulation.sample(20, np.random.default_rng(17))
    pop.kernel = kernel
    pop.bid(STATS, MarketInterval(0, 300), SUNNY)
    before = pop.air_temperature_c.copy(), pop.heat_hvac_kwh.copy()
    with pytest.raises(ValidationError, match="temperature_c"):
        pop.step(0, 60, WeatherSample(temperature_c=float("nan")))
    with pytest.raises(ValidationError, match="clearing_price"):
        pop.respond(float("inf"), 0.5)
    with pytest.raises(ValidationError, match="marginal_fill"):
        pop.respond(0.1, float("nan"))
    with pytest.raises(ValidationError, match="temperature_c"):
        pop.bid(STATS, MarketInterval(0, 300), WeatherSample(temperature_c=float("inf")))
    np.testing.assert_array_equal(pop.air_temperature_c, before[0])
    np.testing.assert_array_equal(pop.heat_hvac_kwh, before[1])


def test_the_kernel_setting_is_checked() -> None:
    with pytest.raises(ValidationError, match="kernel"):
        HvacPopulation.sample(3, np.random.default_rng(0)).kernel = "fortran"
    args = HvacPopulation.sample(3, np.random.default_rng(0))._constructor_arguments()
    args["kernel"] = "cuda"
    with pytest.raises(ValidationError, match="kernel"):
        HvacPopulation(**args)


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_thermostat_without_a_deadband_is_refused_and_nothing_changes(kernel: str) -> None:
    pop = HvacPopulation.sample(10, np.random.default_rng(14))
    pop.kernel = kernel
    setpoint = pop.thermostat_setpoint_c.copy()
    setpoint[3] = 1e20  # sp +- deadband / 2 rounds to sp: one house, the others step first
    pop.thermostat_setpoint_c = setpoint
    before = pop.heat_hvac_kwh.copy(), pop.air_temperature_c.copy()
    with pytest.raises(ValueError, match=r"houses \[3\].*positive deadband"):
        pop.step(0, 60, SUNNY)
    with pytest.raises(ValueError, match="positive deadband"):
        pop.step_many(0, 60, [SUNNY, SUNNY])
    np.testing.assert_array_equal(pop.heat_hvac_kwh, before[0])
    np.testing.assert_array_equal(pop.air_temperature_c, before[1])
    # under direct control the house switches at its band's edges: no setpoint, no refusal
    pop.command(np.zeros(10))
    pop.step(0, 60, SUNNY)


def test_a_band_too_narrow_to_open_is_refused_under_a_schedule_by_both() -> None:
    """A band whose hysteresis is lost to rounding (edges at 1e17 degrees, one ulp 16 K) opens
    no deadband for the schedule's overrides: refused, by the kernels' full check as by the
    reference, once the schedule is in force, and not before."""
    sample = HvacPopulation.sample(3, np.random.default_rng(18))
    args = sample._constructor_arguments()
    args.update(
        comfort_min_c=np.array([20.0, 1e17, 20.0]),
        comfort_max_c=np.array([26.0, 1e17 + 64.0, 26.0]),
        setpoint_c=np.array([23.0, 1e17 + 32.0, 23.0]),
        air_temperature_c=np.array([23.0, 1e17 + 32.0, 23.0]),
        mass_temperature_c=np.array([23.0, 1e17 + 32.0, 23.0]),
    )
    for kernel in ("numba", "numpy"):
        pop = HvacPopulation(**{**args, "kernel": kernel})
        assert not pop._bands_open
        thermostat = np.array([23.0, 23.0, 23.0])  # a deadband that opens: the plain pairs do
        pop.thermostat_setpoint_c = thermostat
        pop.step(0, 60, SUNNY)
        pop.bid(STATS, MarketInterval(60, 300), SUNNY)
        pop.respond(0.1, 0.5)
        pop.thermostat_setpoint_c = thermostat
        before = pop.heat_hvac_kwh.copy(), pop.air_temperature_c.copy()
        with pytest.raises(ValueError, match=r"houses \[1\].*positive deadband"):
            pop.step(60, 60, SUNNY)
        np.testing.assert_array_equal(pop.heat_hvac_kwh, before[0])
        np.testing.assert_array_equal(pop.air_temperature_c, before[1])


def test_importing_the_package_does_not_load_numba() -> None:
    code = (
        "import sys, transactive, transactive.devices, transactive.devices.hvac; "
        "assert 'numba' not in sys.modules, 'numba imported at start-up'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_step_many_of_a_subclass_with_its_own_step_calls_that_step() -> None:
    """The simulator steps HVAC groups by ``step_many``: a subclass's ``step`` still runs."""

    class Counted(HvacPopulation):
        calls = 0

        def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
            Counted.calls += 1
            return super().step(time_s, dt_s, weather)

    pop = Counted.sample(40, np.random.default_rng(5))
    twin = HvacPopulation.sample(40, np.random.default_rng(5))
    series = pop.step_many(0, 60, [SUNNY] * 3, record=True)
    plain = twin.step_many(0, 60, [SUNNY] * 3, record=True)
    assert Counted.calls == 3
    np.testing.assert_array_equal(series.energy_kwh, plain.energy_kwh)  # the same physics


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_dry_run_is_a_copy_stepped_and_changes_nothing(kernel: str) -> None:
    """``step_many(dry_run=True)``: a deep copy's series, the houses themselves untouched."""
    pop = mixed(300, 41)
    pop.kernel = kernel
    pop.bid(STATS, MarketInterval(600, 300), SUNNY)
    pop.respond(0.11, 0.5)
    for start, steps in ((600, 5), (720, 6)):  # inside the schedule, and past its end
        twin = copy.deepcopy(pop)
        before = {k: v.copy() for k, v in vars(pop).items() if isinstance(v, np.ndarray)}
        outdoor, schedule = pop.outdoor_temperature_c, pop._schedule
        dry = pop.step_many(start, 60, [SUNNY] * steps, record=True, dry_run=True)
        for k, v in before.items():
            np.testing.assert_array_equal(getattr(pop, k), v, err_msg=k)
        assert pop.outdoor_temperature_c == outdoor and pop._schedule is schedule
        wet = twin.step_many(start, 60, [SUNNY] * steps, record=True)
        np.testing.assert_array_equal(dry.step_energy_kwh, wet.step_energy_kwh)
        np.testing.assert_array_equal(dry.step_air_temperature_c, wet.step_air_temperature_c)
        np.testing.assert_array_equal(dry.energy_kwh, wet.energy_kwh)
        np.testing.assert_array_equal(dry.total_power_kw, wet.total_power_kw)
