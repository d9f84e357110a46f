"""PowerMatching City (Bliek et al., IEEE ISGT Europe 2010): the PowerMatcher tree in the loop."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.market.strategies import PRICE_CAP, PRICE_FLOOR, bid_curves, volume
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.sim import SimulationResult, builtin_scenarios, parse_scenario, simulate, summary
from transactive.sim.engine import _Setup, powermatcher_clearing, wind_power_pu
from transactive.sim.results import self_sufficiency_pct

PRICE_RESOLUTION = 1e-7
"""Prices of two clearings of the same market agree to the search's resolution."""


def _builtin(**replace: str) -> str:
    folder = resources.files("transactive.sim") / "scenarios"
    text = (folder / "powermatching-city.toml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


# three hours across the evening price peak (the wholesale price passes the gas turbine's
# cost), the smart appliances loaded in the first half hour with 2-3 h to finish
APPLIANCE = "[population.appliance]\ncount = 25\nparticipation = 1.0\n"
SHORT = {
    "horizon_h = 24": "horizon_h = 3",
    "T00:00:00+01:00": "T16:00:00+01:00",
    APPLIANCE: APPLIANCE
    + "options = { morning_share = 1.0, morning_h = [0.0, 0.5], window_h = [2.0, 3.0] }\n",
}


@pytest.fixture(scope="module")
def pmc() -> SimulationResult:
    return simulate(parse_scenario(_builtin(**SHORT)))


@settings(max_examples=40, deadline=None)
@given(bid_curves(max_curves=16), st.data())
def test_the_tree_clears_exactly_as_the_flat_market(bids, data):
    n = len(bids)
    home = np.array(data.draw(st.lists(st.integers(-1, 6), min_size=n, max_size=n)))
    per = data.draw(st.integers(1, 4))
    supply = Supply(price_per_kwh=0.1, capacity_kw=data.draw(st.floats(0.0, 40.0)))
    flat = clear(bids, price_cap=PRICE_CAP, price_floor=PRICE_FLOOR, supply=supply)
    tree = powermatcher_clearing(
        bids,
        home,
        homes_per_concentrator=per,
        price_cap=PRICE_CAP,
        price_floor=PRICE_FLOOR,
        supply=supply,
    )
    assert math.isclose(tree.clearing_price, flat.clearing_price, abs_tol=PRICE_RESOLUTION)
    tol = 1e-8 * volume(bids)
    np.testing.assert_allclose(tree.allocation_kw, flat.allocation_kw, atol=tol)
    # what a device is told (price and fill) is what the flat market tells it
    np.testing.assert_allclose(tree.marginal_fill, flat.marginal_fill, atol=1e-8)
    assert (tree.ids is None) == (bids.ids is None)
    if bids.ids is not None:
        np.testing.assert_array_equal(tree.ids, bids.ids)


def test_wind_power_curve():
    kw = {"cut_in_m_per_s": 3.0, "rated_m_per_s": 12.0, "cut_out_m_per_s": 25.0}
    v = np.array([0.0, 2.9, 3.0, 12.0, 20.0, 24.9, 25.0, 30.0])
    np.testing.assert_allclose(wind_power_pu(v, **kw), [0, 0, 0, 1, 1, 1, 0, 0])
    # cubic between cut-in and rated: (v^3 - 27) / (1728 - 27)
    assert math.isclose(float(wind_power_pu(8.0, **kw)), (512 - 27) / (1728 - 27))
    ramp = wind_power_pu(np.linspace(3.0, 12.0, 50), **kw)
    assert np.all(np.diff(ramp) > 0)


def test_listed_and_shaped_as_phase_one():
    assert "powermatching-city" in builtin_scenarios()
    sc = parse_scenario(_builtin())
    assert sc.n_homes == 25
    assert sc.mechanism.kind == "powermatcher"
    chp, hp = sc.population.chp, sc.population.heat_pump
    # the micro-CHP homes and the heat-pump homes are different homes
    assert chp.first_home + chp.count <= hp.first_home
    # phase 1's hybrid heat pumps and a smart appliance in every home, bidding in the tree
    assert hp.options["hybrid_share"] == 1.0
    assert sc.population.appliance.count == sc.n_homes
    assert sc.population.appliance.participation == 1.0
    assert {g.kind for g in sc.supply.generators} == {"wind", "dispatchable"}


def test_scenario_mistakes_are_all_reported():
    text = _builtin(
        **{
            "dso_check = false": "dso_check = true",
            "capacity_kw = 10.0, hub_height_m = 30.0}": (
                "capacity_kw = 10.0, hub_height_m = 30.0, premium_per_kwh = 0.1}"
            ),
            "marginal_cost_per_kwh = 0.065}": (
                "marginal_cost_per_kwh = 0.065, premium_per_kwh = 0.1}"
            ),
        }
    )
    with pytest.raises(ValidationError) as err:
        parse_scenario(text)
    message = str(err.value)
    assert "mechanism.dso_check" in message
    assert "supply.generators.0" in message and "must-take" in message
    assert "supply.generators.1" in message and "exactly one" in message


def test_summary_reports_self_sufficiency_and_imbalance(pmc):
    data = summary(pmc)
    pm = data["powermatching"]
    base, tr = pmc.runs["baseline"], pmc.runs["transactive"]
    for name in ("baseline", "transactive"):
        assert 0.0 < pm["self_sufficiency_pct"][name] < 100.0
    # the self-sufficiency by hand from the series: own generation against consumption
    gen = tr.series["generator_kw"] - tr.series["load_kw:pv"] - tr.series["load_kw:chp"]
    use = tr.series["feeder_load_kw"] + gen - tr.series["losses_kw"]
    ours = self_sufficiency_pct(tr)
    assert ours is not None
    assert math.isclose(ours, 100 * np.minimum(use, gen).sum() / use.sum(), rel_tol=1e-12)
    gap = np.abs(tr.series["feeder_load_kw"] - base.series["feeder_load_kw"])
    assert math.isclose(pm["imbalance"]["mean_absolute_imbalance_kw"], gap.mean(), rel_tol=1e-12)
    assert (
        data["published"]["self_sufficiency_pct"]["ours"]
        == pm["self_sufficiency_pct"]["transactive"]
    )


def test_generators_wind_must_take_gas_turbine_at_its_cost(pmc):
    base, tr = pmc.runs["baseline"], pmc.runs["transactive"]
    wind = "generator_kw:wind"
    gas = "generator_kw:gas_turbine"
    # the wind gives what the weather gives, with or without a market
    np.testing.assert_array_equal(base.series[wind], tr.series[wind])
    assert tr.series[wind].max() > 0
    # no price in the baseline: the gas turbine stays off; in the market it runs only when the
    # price reaches its marginal cost
    assert np.all(base.series[gas] == 0)
    price = tr.series["clearing_price_per_kwh"]
    running = tr.series[gas] > 1e-9
    assert running.any()
    assert np.all(price[running] >= 0.065 - 1e-9)
    assert np.all(tr.series[gas][price > 0.065 + 1e-6] == pytest.approx(10.0))


def test_same_run_as_the_flat_double_auction(pmc):
    """The concentrator tree changes who sums the bids, not the outcome."""
    flat = simulate(
        parse_scenario(_builtin(**SHORT, **{'kind = "powermatcher"': 'kind = "double_auction"'}))
    )
    a, b = pmc.runs["transactive"].series, flat.runs["transactive"].series
    np.testing.assert_allclose(
        a["clearing_price_per_kwh"], b["clearing_price_per_kwh"], atol=PRICE_RESOLUTION
    )
    np.testing.assert_allclose(a["feeder_load_kw"], b["feeder_load_kw"], rtol=1e-6, atol=1e-6)


def test_hybrids_and_appliances_in_the_tree(pmc):
    """Every hybrid is told the flat tariff; every appliance cycle due by the end is served."""
    groups = {g.kind: g.population for g in _Setup(pmc.scenario, None).groups() if g.participating}
    hp, app = groups["heat_pump"], groups["appliance"]
    assert hp.hybrid.all()
    np.testing.assert_array_equal(hp.electricity_price_per_kwh, 0.0522)
    horizon_s = pmc.scenario.horizon_s
    assert (app.latest_finish_s <= horizon_s).all()
    data = summary(pmc)
    for name, run in pmc.runs.items():
        kpis = data["runs"][name]
        assert kpis["unserved_appliance_kwh"] == 0.0
        dev = run.devices
        mine = dev["kind"] == "appliance"
        np.testing.assert_allclose(dev["energy_kwh"][mine], app.cycle_energy_kwh, rtol=1e-12)
        assert run.series["load_kw:appliance"].max() > 0
        # the hybrids' gas is metered and billed (none burns: every price is below their
        # switch price, gas / 0.9 x COP of about 0.17-0.23 per kWh, and no backup is needed)
        assert kpis["gas_kwh"] == 0.0 and kpis["gas_cost"] == 0.0
        np.testing.assert_array_equal(run.series["gas_kw"], 0.0)
    # the tree moved cycles: the appliances' load is not the baseline's, their energy is
    base, tr = pmc.runs["baseline"].series, pmc.runs["transactive"].series
    assert not np.array_equal(base["load_kw:appliance"], tr["load_kw:appliance"])
    assert tr["load_kw:appliance"].sum() == pytest.approx(base["load_kw:appliance"].sum())
