"""Hybrid heat pumps' gas and smart appliances' cycles in the simulator (issue 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transactive.devices import AppliancePopulation
from transactive.sim import SimulationResult, parse_scenario, simulate, summary
from transactive.sim.engine import _Setup, _stream, _within_horizon
from transactive.weather import WeatherSample

GAS_PRICE = 0.06
"""The heat-pump sample's default gas price (per kWh of gas)."""
CHEAP, DEAR = 0.05, 0.40
"""Electricity prices below and above every hybrid's switch price (gas / 0.9 x COP, about
0.17-0.23 per kWh at the Sand Point January afternoon's 2-4 degC)."""


def _hourly(first: int, prices: list[float]) -> str:
    """24 hourly prices, ``prices`` from hour ``first`` on and ``CHEAP`` elsewhere."""
    day = [CHEAP] * 24
    day[first : first + len(prices)] = prices
    return "[" + ", ".join(f"{p:g}" for p in day) + "]"


HYBRIDS = f"""
name = "hybrids"
start = 2021-01-13T16:00:00+01:00
horizon_h = 2
market_interval_s = 300
physics_step_s = 60

[weather]
tmy3 = "703165TY.csv"

[feeder]
name = "case33bw"

[population]
seed = 3

[population.heat_pump]
count = 8
participation = 1.0
options = {{ hybrid_share = 1.0 }}

[mechanism]
kind = "double_auction"
flat_price_per_kwh = {DEAR}
dso_check = false

[supply]
hourly_price_per_kwh = {_hourly(16, [CHEAP, DEAR])}
"""


@pytest.fixture(scope="module")
def hybrids() -> SimulationResult:
    """Eight hybrids: a dear flat tariff in the baseline; cheap, then dear, in the market."""
    return simulate(parse_scenario(HYBRIDS))


def test_the_hybrids_are_told_the_flat_tariff() -> None:
    sc = parse_scenario(HYBRIDS)
    (group,) = _Setup(sc, None).groups()
    pop = group.population
    assert pop.hybrid.all()
    np.testing.assert_array_equal(pop.electricity_price_per_kwh, DEAR)
    # an option given wins over the flat tariff
    text = HYBRIDS.replace(
        "hybrid_share = 1.0", "hybrid_share = 1.0, electricity_price_per_kwh = 0.1"
    )
    (group,) = _Setup(parse_scenario(text), None).groups()
    np.testing.assert_array_equal(group.population.electricity_price_per_kwh, 0.1)


def test_a_dear_flat_tariff_heats_with_gas_and_bills_it(hybrids: SimulationResult) -> None:
    """The baseline's thermostats heat with the boilers: no electricity, the gas billed."""
    base = hybrids.runs["baseline"]
    dev = base.devices
    assert base.kpis["gas_kwh"] is not None and base.kpis["gas_kwh"] > 0
    np.testing.assert_array_equal(base.series["load_kw:heat_pump"], 0.0)
    np.testing.assert_array_equal(dev["energy_kwh"], 0.0)
    # each home pays for its gas: its cost is its gas at the gas price (no electricity bought)
    np.testing.assert_allclose(dev["gas_cost"], dev["gas_kwh"] * GAS_PRICE, rtol=1e-12)
    np.testing.assert_allclose(dev["cost"], dev["gas_cost"], rtol=1e-12)
    assert base.kpis["cost"] == pytest.approx(base.kpis["gas_cost"], rel=1e-12)
    assert base.kpis["gas_cost"] == pytest.approx(base.kpis["gas_kwh"] * GAS_PRICE, rel=1e-12)
    # the series is the meters' sum
    interval_h = hybrids.scenario.market_interval_s / 3600.0
    assert float(base.series["gas_kw"].sum()) * interval_h == pytest.approx(base.kpis["gas_kwh"])


def test_the_market_buys_below_the_switch_price_and_not_above(hybrids: SimulationResult) -> None:
    tr = hybrids.runs["transactive"]
    price = tr.series["clearing_price_per_kwh"]
    cheap, dear = price < 0.1, price > 0.3
    assert cheap.sum() == 12 and dear.sum() == 12  # the first hour at 0.05, the second at 0.40
    electric = tr.series["load_kw:heat_pump"]
    gas = tr.series["gas_kw"]
    # below the switch price the heat pumps heat (and no gas burns); above it they buy nothing
    assert electric[cheap].sum() > 0
    np.testing.assert_array_equal(gas[cheap], 0.0)
    np.testing.assert_array_equal(electric[dear], 0.0)
    # the gas bill is in the cost: electricity at the clearing price plus gas at its price
    dev = tr.devices
    np.testing.assert_allclose(dev["cost"] - dev["gas_cost"], dev["energy_kwh"] * CHEAP, rtol=1e-9)
    np.testing.assert_allclose(dev["gas_cost"], dev["gas_kwh"] * GAS_PRICE, rtol=1e-12)
    data = summary(hybrids)
    for run in ("baseline", "transactive"):
        kpis = data["runs"][run]
        assert kpis["gas_cost"] == pytest.approx(kpis["gas_kwh"] * GAS_PRICE, rel=1e-12)
        group = data["groups"]["participant"][run]
        assert group["gas_kwh"] == pytest.approx(kpis["gas_kwh"], rel=1e-12)
        assert group["cost"] == pytest.approx(kpis["cost"], rel=1e-12)


def test_the_hybrids_burn_gas_when_the_market_is_dear() -> None:
    """Two dear hours in the market: the houses drift to the band's edge and the boilers heat."""
    text = HYBRIDS.replace("horizon_h = 2", "horizon_h = 4").replace(
        _hourly(16, [CHEAP, DEAR]), _hourly(16, [DEAR] * 4)
    )
    sim = simulate(parse_scenario(text))
    tr = sim.runs["transactive"]
    np.testing.assert_array_equal(tr.series["load_kw:heat_pump"], 0.0)
    assert tr.kpis["gas_kwh"] is not None and tr.kpis["gas_kwh"] > 0
    assert tr.kpis["cost"] == pytest.approx(tr.kpis["gas_cost"], rel=1e-12)
    # the boilers only guard the comfort band's lower edge (allocation zero: scheduled off)
    assert tr.kpis["comfort_violation_degree_hours"] == pytest.approx(0.0, abs=0.05)


APPLIANCES = f"""
name = "appliances"
start = 2021-01-13T00:00:00+01:00
horizon_h = 6
market_interval_s = 300
physics_step_s = 60

[weather]
tmy3 = "703165TY.csv"

[feeder]
name = "case33bw"

[population]
seed = 5

[population.appliance]
count = 30
participation = 0.5
options = {{ morning_share = 1.0, morning_h = [0.0, 1.0], window_h = [3.0, 8.0] }}

[mechanism]
kind = "double_auction"
flat_price_per_kwh = 0.06
dso_check = false

[supply]
hourly_price_per_kwh = {_hourly(0, [0.10, 0.10, 0.10, 0.03, 0.03, 0.03])}
"""


@pytest.fixture(scope="module")
def appliances() -> SimulationResult:
    """30 appliances loaded in the first hour, half of them bidding; dear, then cheap, hours."""
    return simulate(parse_scenario(APPLIANCES))


def _sampled(text: str) -> list[AppliancePopulation]:
    """The appliance populations of a scenario (participants first), as the runs start them."""
    return [g.population for g in _Setup(parse_scenario(text), None).groups()]


def _started_at(pops: list[AppliancePopulation], start_s: list[np.ndarray]) -> AppliancePopulation:
    """The same cycles as running from ``start_s`` (their profiles metered by ``step``)."""
    return AppliancePopulation(
        phase_power_kw=np.concatenate([p.phase_power_kw for p in pops]),
        phase_duration_s=np.concatenate([p.phase_duration_s for p in pops]),
        earliest_start_s=np.concatenate([p.earliest_start_s for p in pops]),
        latest_finish_s=np.concatenate([p.latest_finish_s for p in pops]),
        start_s=np.concatenate(start_s),
    )


def test_every_cycle_due_inside_the_horizon_is_served(appliances: SimulationResult) -> None:
    pops = _sampled(APPLIANCES)
    horizon_s = appliances.scenario.horizon_s
    due = np.concatenate([p.latest_finish_s for p in pops])
    assert (due <= horizon_s).all()  # loaded in the first hour: every cycle fits, is due by 6 h
    cycle = np.concatenate([p.cycle_energy_kwh for p in pops])
    for run in appliances.runs.values():
        assert run.kpis["unserved_appliance_kwh"] == 0.0
        np.testing.assert_array_equal(run.devices["unserved_kwh"], 0.0)
        np.testing.assert_allclose(run.devices["energy_kwh"], cycle, rtol=1e-12)


def test_left_alone_a_cycle_starts_when_it_is_loaded(appliances: SimulationResult) -> None:
    """The baseline and the non-participants start at the earliest start, metered exactly."""
    pops = _sampled(APPLIANCES)
    at_once = _started_at(pops, [p.earliest_start_s for p in pops])
    sc = appliances.scenario
    steps = sc.horizon_s // sc.physics_step_s
    weather = WeatherSample(temperature_c=0.0)
    per_step = np.array(
        [
            at_once.step(k * sc.physics_step_s, sc.physics_step_s, weather).power_kw
            for k in range(steps)
        ]
    )
    per_interval = per_step.reshape(sc.n_intervals, -1, at_once.n_devices).mean(axis=1)
    base, tr = appliances.runs["baseline"], appliances.runs["transactive"]
    np.testing.assert_allclose(
        base.series["load_kw:appliance"], per_interval.sum(axis=1), atol=1e-9
    )
    n_part = pops[0].n_devices
    non = per_interval[:, n_part:].sum(axis=1)
    np.testing.assert_allclose(base.series["group_load_kw:non-participant"], non, atol=1e-9)
    np.testing.assert_allclose(tr.series["group_load_kw:non-participant"], non, atol=1e-9)


def test_the_market_shifts_the_participants_later(appliances: SimulationResult) -> None:
    base, tr = appliances.runs["baseline"], appliances.runs["transactive"]
    b = np.cumsum(base.series["group_load_kw:participant"])
    t = np.cumsum(tr.series["group_load_kw:participant"])
    # starting at the earliest start is the most a cycle can have drawn by any time
    assert (t <= b + 1e-9).all()
    assert (t < b - 1.0).any()
    assert t[-1] == pytest.approx(b[-1], rel=1e-12)  # and every cycle ran in full in both


def test_windows_past_the_horizon_are_made_due_by_its_end() -> None:
    late = APPLIANCES.replace("morning_h = [0.0, 1.0]", "morning_h = [0.0, 5.5]")
    sim = simulate(parse_scenario(late))
    sc = sim.scenario
    pops = _sampled(late)
    # the sample as drawn (participants, then non-participants, from the kind's stream)
    rng = np.random.default_rng(_stream(sc.population.seed, "appliance"))
    raw = np.concatenate(
        [
            AppliancePopulation.sample(
                p.n_devices, rng, morning_share=1.0, morning_h=(0.0, 5.5), window_h=(3.0, 8.0)
            ).latest_finish_s
            for p in pops
        ]
    )
    due = np.concatenate([p.latest_finish_s for p in pops])
    earliest = np.concatenate([p.earliest_start_s for p in pops])
    duration = np.concatenate([p.duration_s for p in pops])
    fits = earliest + duration <= sc.horizon_s
    assert (due[fits] <= sc.horizon_s).all()
    np.testing.assert_array_equal(due[~fits], (earliest + duration)[~fits])
    assert (~fits).any()
    assert (raw > sc.horizon_s).any()
    np.testing.assert_array_equal(
        due, np.minimum(raw, np.maximum(sc.horizon_s, earliest + duration))
    )
    assert sim.appliance_windows_cut == int((due < raw).sum()) > 0
    notes = summary(sim)["notes"]
    assert any(f"{sim.appliance_windows_cut} of 30 appliance cycles" in n for n in notes)
    for run in sim.runs.values():
        assert run.kpis["unserved_appliance_kwh"] == 0.0


def test_within_horizon_rule() -> None:
    hour = 3600.0
    pop = AppliancePopulation(
        phase_power_kw=[1.0, 1.0, 1.0, 1.0],
        phase_duration_s=[hour, hour, hour, hour],
        earliest_start_s=[0.0, 2 * hour, 5.5 * hour, 7 * hour],
        latest_finish_s=[3 * hour, 9 * hour, 10 * hour, 12 * hour],
        labels=["a", "b", "c", "d"],
        ids=["w", "x", "y", "z"],
    )
    cut = _within_horizon(pop, round(6 * hour))
    # inside: kept; fits: due at the end; loaded too late to finish: must start when loaded
    np.testing.assert_array_equal(cut.latest_finish_s, [3 * hour, 6 * hour, 6.5 * hour, 8 * hour])
    np.testing.assert_array_equal(cut.earliest_start_s, pop.earliest_start_s)
    np.testing.assert_array_equal(cut.ids, pop.ids)
    np.testing.assert_array_equal(cut.labels, pop.labels)
    np.testing.assert_array_equal(cut.band_k, pop.band_k)
    assert math.isclose(float(cut.cycle_energy_kwh.sum()), 4.0)
