"""``step_many`` of the EV, battery, PV and base-load populations: the numbers of their steps.

The simulator steps every group through a market interval in one ``step_many`` call; each
kind's must give, to the bit, what as many ``step`` calls give (energies, powers, state), also
across the end of a responded interval, leave the population alone on a dry run, and still
call a subclass's own ``step``. (HVAC and water heaters: ``test_hvac_kernels.py`` and
``test_water_heater_kernels.py``.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.pv import PVPopulation
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
#: A responded interval from 10:00 (EVs: 21:00, when they are plugged in), and minute steps
#: from two minutes before it to four after its end.
DT_S, STEPS = 60, 9
INTERVAL_START_S = {"ev": 75_600}


def _sky(k: int) -> WeatherSample:
    """Sun moving and clouds passing, minute by minute (PV reads all of it)."""
    return WeatherSample(
        temperature_c=24.0 + 0.3 * k,
        ghi_w_per_m2=650.0 - 40.0 * k,
        dni_w_per_m2=520.0 - 30.0 * k,
        dhi_w_per_m2=110.0 + 5.0 * k,
        solar_zenith_deg=35.0 + 0.25 * k,
        solar_azimuth_deg=170.0 + 0.5 * k,
        wind_speed_m_per_s=2.0,
    )


WEATHER = [_sky(k) for k in range(STEPS)]

#: Each kind: a sampled population, and its state attributes (what a step changes).
KINDS: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {
    "ev": (lambda: EVPopulation.sample(300, np.random.default_rng(1)), ("delivered_kwh",)),
    "battery": (lambda: BatteryPopulation.sample(200, np.random.default_rng(2)), ("soc_pu",)),
    "pv": (lambda: PVPopulation.sample(250, np.random.default_rng(3)), ()),
    "base_load": (lambda: BaseLoadPopulation.sample(400, np.random.default_rng(4)), ()),
}


def _responded(kind: str, kernel: str) -> Any:
    pop = KINDS[kind][0]()
    pop.kernel = kernel
    pop.bid(STATS, MarketInterval(INTERVAL_START_S.get(kind, 36_000), 300), WEATHER[2])
    pop.respond(0.03, 0.5)  # cheap: the batteries charge, the EVs too
    return pop


def _start_s(kind: str) -> int:
    return INTERVAL_START_S.get(kind, 36_000) - 2 * DT_S


def _assert_the_loop_of_steps(kind: str, many: Any, loop: Any, *, dry_run: bool) -> Any:
    start_s = _start_s(kind)
    series = many.step_many(start_s, DT_S, WEATHER, record=True, dry_run=dry_run)
    energy = np.zeros(loop.n_devices)
    for k in range(STEPS):
        res = loop.step(start_s + k * DT_S, DT_S, WEATHER[k])
        energy += res.energy_kwh
        np.testing.assert_array_equal(series.step_energy_kwh[k], res.energy_kwh, f"step {k}")
        assert series.total_power_kw[k] == float(np.sum(res.power_kw)), f"power of step {k}"
    np.testing.assert_array_equal(series.energy_kwh, energy)
    assert series.step_air_temperature_c is None
    np.testing.assert_array_equal(series.ids, loop.ids)
    if not dry_run:
        for name in KINDS[kind][1]:
            np.testing.assert_array_equal(getattr(many, name), getattr(loop, name), name)
    return series


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_step_many_is_the_loop_of_steps_bit_for_bit(kind: str, kernel: str) -> None:
    many = _responded(kind, kernel)
    loop = copy.deepcopy(many)
    series = _assert_the_loop_of_steps(kind, many, loop, dry_run=False)
    assert float(np.abs(series.energy_kwh).sum()) > 0  # the devices worked
    # without a record: the same totals
    again = _responded(kind, kernel)
    plain = again.step_many(_start_s(kind), DT_S, WEATHER)
    assert plain.step_energy_kwh is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_dry_run_is_a_copy_stepped_and_changes_nothing(kind: str) -> None:
    pop = _responded(kind, "numba")
    before = {k: v.copy() for k, v in vars(pop).items() if isinstance(v, np.ndarray)}
    others = {k: v for k, v in vars(pop).items() if not isinstance(v, np.ndarray)}
    _assert_the_loop_of_steps(kind, pop, copy.deepcopy(pop), dry_run=True)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(pop, k), v, err_msg=k)
    for k, v in others.items():
        assert getattr(pop, k) is v, k


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_step_many_refuses_bad_weather_and_changes_nothing(kind: str) -> None:
    pop = _responded(kind, "numba")
    before = {k: v.copy() for k, v in vars(pop).items() if isinstance(v, np.ndarray)}
    bad = [*WEATHER[:3], WeatherSample(temperature_c=float("nan")), *WEATHER[4:]]
    with pytest.raises(ValidationError, match="temperature_c"):
        pop.step_many(_start_s(kind), DT_S, bad)
    with pytest.raises(ValidationError, match="at least one sample"):
        pop.step_many(_start_s(kind), DT_S, [])
    with pytest.raises(ValidationError):
        pop.step_many(_start_s(kind), 0, WEATHER)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(pop, k), v, err_msg=k)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_step_many_of_a_subclass_with_its_own_step_calls_that_step(kind: str) -> None:
    base = type(KINDS[kind][0]())

    class Halved(base):  # type: ignore[valid-type,misc]
        calls = 0

        def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
            Halved.calls += 1
            res = super().step(time_s, dt_s, weather)
            return StepResult(res.power_kw / 2, res.energy_kwh / 2, res.ids)

    pop = _responded(kind, "numba")
    pop.__class__ = Halved
    twin = copy.deepcopy(pop)
    twin.__class__ = base
    series = pop.step_many(_start_s(kind), DT_S, WEATHER, record=True)
    assert Halved.calls == STEPS
    whole = twin.step_many(_start_s(kind), DT_S, WEATHER, record=True)
    np.testing.assert_array_equal(series.step_energy_kwh, whole.step_energy_kwh / 2)
