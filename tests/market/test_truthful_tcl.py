"""The truthful TCL market (Li, Zhang, Lian & Kalsi 2016): allocation, payments, bids, estimation.

References used here, independent of the module: the allocation against the same linear program
solved by cvxpy, the VCG payments against the Clarke pivot computed from cvxpy solves without
each agent, truthfulness by the incentive probe over a family of misreports (hypothesis), the
ETP model against ``HvacPopulation.step``, and the estimated bids against the bids of the true
model filtered on the same measurements.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive import ValidationError
from transactive.devices.hvac import HvacPopulation
from transactive.market.incentives import (
    incentive_probe,
    tcl_misreports,
    truthful_tcl_mechanism,
    truthful_tcl_utility,
)
from transactive.market.iterative.framework import StoppingRule
from transactive.market.truthful_tcl import (
    TclBids,
    TclModel,
    bids_from_estimate,
    bids_from_hvac,
    clear_truthful,
    estimate_tcl_model,
    tcl_bids,
    tcl_model_from_hvac,
)
from transactive.weather import WeatherSample

# ---------------------------------------------------------------------- random markets

PRICES = st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0]) | st.floats(0.0, 1.0)


@st.composite
def markets(draw: st.DrawFn, max_agents: int = 10) -> dict[str, Any]:
    """Bids, a feeder (capacity, base load), a reserve price and a period."""
    n = draw(st.integers(1, max_agents))
    price = draw(st.lists(PRICES, min_size=n, max_size=n))
    power = draw(
        st.lists(st.sampled_from([1.0, 2.0, 3.5]) | st.floats(0.1, 8.0), min_size=n, max_size=n)
    )
    bids = TclBids([f"tcl-{i}" for i in range(n)], price, power)
    total = float(np.sum(power))
    headroom = draw(st.floats(0.05, 1.3)) * total
    base = draw(st.sampled_from([0.0, 5.0, 50.0]))
    return {
        "bids": bids,
        "capacity_kw": base + headroom,
        "base_load_kw": base,
        "reserve_price_per_kwh": draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])),
        "duration_h": draw(st.sampled_from([0.25, 1.0 / 12.0, 1.0])),
    }


def _settings(market: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in market.items() if k != "bids"}


def _lp_welfare(value, power, headroom, reserve) -> float:
    """The team problem solved centrally: max sum (v - r) a, 0 <= a <= P, sum a <= K (per hour)."""
    if len(value) == 0:
        return 0.0
    a = cp.Variable(len(value))
    problem = cp.Problem(
        cp.Maximize((np.asarray(value) - reserve) @ a),
        [a >= 0, a <= np.asarray(power), np.ones(len(value)) @ a <= headroom],
    )
    problem.solve(solver=cp.CLARABEL)  # type: ignore[no-untyped-call]
    assert problem.status == cp.OPTIMAL
    return float(problem.value)


# ---------------------------------------------------------------------- clearing by hand


def test_hand_case_allocation_uniform_price_and_vcg_payments():
    # Three 4 kW bids at 0.5, 0.3, 0.2 on 6 kW of headroom, one hour: a runs, b runs half.
    bids = TclBids(["a", "b", "c"], [0.5, 0.3, 0.2], [4.0, 4.0, 4.0])
    vcg = clear_truthful(bids, capacity_kw=6.0, duration_h=1.0)
    np.testing.assert_allclose(vcg.power_kw, [4.0, 2.0, 0.0])
    np.testing.assert_allclose(vcg.run_fraction, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(vcg.running, [True, True, False])
    assert vcg.binding and vcg.clearing_price_per_kwh == 0.3
    # Clarke: without a, b and c would take 4 + 2 kW (1.2 + 0.4); with a they take 2 kW (0.6).
    # Without b, c would take 2 kW (0.4); with b, nothing. c displaces nobody.
    np.testing.assert_allclose(vcg.payment, [1.0, 0.4, 0.0])
    assert vcg.capacity_used_kw == pytest.approx(6.0)
    assert vcg.declared_welfare == pytest.approx(0.5 * 4 + 0.3 * 2)
    uniform = clear_truthful(bids, capacity_kw=6.0, duration_h=1.0, pricing="uniform")
    np.testing.assert_allclose(uniform.power_kw, vcg.power_kw)
    np.testing.assert_allclose(uniform.payment, [1.2, 0.6, 0.0])
    assert uniform.payment_by_id() == pytest.approx({"a": 1.2, "b": 0.6, "c": 0.0})


def test_headroom_ending_at_a_bid_prices_at_the_highest_losing_bid():
    bids = TclBids(["a", "b", "c"], [0.5, 0.3, 0.2], [4.0, 4.0, 4.0])
    result = clear_truthful(bids, capacity_kw=8.0, duration_h=1.0)
    np.testing.assert_allclose(result.power_kw, [4.0, 4.0, 0.0])
    assert result.clearing_price_per_kwh == 0.2  # the (k+1)-th price
    np.testing.assert_allclose(result.payment, [0.8, 0.8, 0.0])  # each displaces 4 kW of c


def test_an_unconstrained_feeder_charges_the_reserve_price():
    bids = TclBids(["a", "b", "c"], [0.5, 0.3, 0.2], [4.0, 4.0, 4.0])
    result = clear_truthful(
        bids, capacity_kw=100.0, base_load_kw=20.0, duration_h=0.5, reserve_price_per_kwh=0.25
    )
    assert not result.binding
    assert result.clearing_price_per_kwh == 0.25
    np.testing.assert_allclose(result.power_kw, [4.0, 4.0, 0.0])  # c bids below the reserve
    np.testing.assert_allclose(result.payment, [0.5, 0.5, 0.0])  # 2 kWh each at 0.25
    assert result.capacity_used_kw == pytest.approx(28.0)


def test_the_base_load_is_served_first():
    bids = TclBids(["a", "b"], [0.5, 0.3], [4.0, 4.0])
    result = clear_truthful(bids, capacity_kw=10.0, base_load_kw=5.0, duration_h=1.0)
    np.testing.assert_allclose(result.power_kw, [4.0, 1.0])
    assert result.capacity_used_kw == pytest.approx(10.0)


# ---------------------------------------------------------------------- properties


@given(markets())
def test_the_feeder_limit_holds_and_payments_are_individually_rational(market):
    result = clear_truthful(market["bids"], **_settings(market))
    bids = market["bids"]
    assert result.capacity_used_kw <= market["capacity_kw"] * (1 + 1e-12)
    assert np.all(result.power_kw >= 0)
    assert np.all(result.power_kw <= bids.power_kw * (1 + 1e-12))
    tol = 1e-9 * (1.0 + float(np.sum(bids.price_per_kwh * bids.power_kw)))
    energy = result.energy_kwh
    assert np.all(result.payment <= bids.price_per_kwh * energy + tol)  # never above the bid
    assert np.all(result.payment >= market["reserve_price_per_kwh"] * energy - tol)
    assert np.all(result.payment[~result.running] == 0.0)  # losers pay nothing
    assert np.count_nonzero((result.run_fraction > 0) & (result.run_fraction < 1)) <= 1


@settings(max_examples=40)
@given(markets())
def test_the_allocation_is_the_team_optimum_of_the_central_lp(market):
    """Independent reference: the same linear program solved by cvxpy (Clarabel)."""
    bids, cfg = market["bids"], _settings(market)
    result = clear_truthful(bids, **cfg)
    headroom = cfg["capacity_kw"] - cfg["base_load_kw"]
    optimum = _lp_welfare(bids.price_per_kwh, bids.power_kw, headroom, cfg["reserve_price_per_kwh"])
    welfare_per_h = result.declared_welfare / cfg["duration_h"]
    assert welfare_per_h == pytest.approx(optimum, rel=1e-6, abs=1e-6)
    # And the highest-value TCLs run: every served bid is at least every refused eligible one.
    eligible = (bids.price_per_kwh > cfg["reserve_price_per_kwh"]) & (bids.power_kw > 0)
    served = result.power_kw > 0
    unserved = eligible & (result.run_fraction < 1)
    if served.any() and unserved.any():
        assert bids.price_per_kwh[served].min() >= bids.price_per_kwh[unserved].max()


@settings(max_examples=15)
@given(markets(max_agents=6))
def test_vcg_payments_equal_the_clarke_pivot_from_central_solves(market):
    bids, cfg = market["bids"], _settings(market)
    result = clear_truthful(bids, **cfg)
    headroom = cfg["capacity_kw"] - cfg["base_load_kw"]
    r, h = cfg["reserve_price_per_kwh"], cfg["duration_h"]
    value, power = bids.price_per_kwh, bids.power_kw
    total = _lp_welfare(value, power, headroom, r)
    for i in range(len(bids)):
        others = np.arange(len(bids)) != i
        without_i = _lp_welfare(value[others], power[others], headroom, r)
        a_i = result.power_kw[i]
        clarke = h * (r * a_i + without_i - (total - (value[i] - r) * a_i))
        assert result.payment[i] == pytest.approx(clarke, rel=1e-6, abs=1e-6)


def _probe_agents(result) -> list[int]:
    """A winner and a loser (when there are), the marginal TCL first."""
    frac = result.run_fraction
    marginal = np.flatnonzero((frac > 0) & (frac < 1))
    winners = np.flatnonzero(frac == 1)
    losers = np.flatnonzero(frac == 0)
    picks = [*marginal[:1], *winners[:1], *losers[:1]]
    return [int(i) for i in picks]


@settings(max_examples=60)
@given(markets())
def test_no_misreport_gains_under_vcg_for_winners_and_losers(market):
    """Dominant-strategy truthfulness (the VCG theorem) over a family of misreports."""
    bids, cfg = market["bids"], _settings(market)
    mechanism = truthful_tcl_mechanism(**cfg)
    result = mechanism(bids)
    scale = 1e-9 * (1.0 + float(np.sum(bids.price_per_kwh * bids.power_kw)))
    for agent in _probe_agents(result):
        family = tcl_misreports(bids, agent, price_shifts_per_kwh=(-0.2, -0.01, 0.0, 0.01, 0.2))
        probe = incentive_probe(mechanism, bids, agent, family, truthful_tcl_utility)
        assert probe.gain <= scale, (agent, probe.best_label, probe.gain)


def test_uniform_pricing_lets_the_marginal_tcl_gain_by_shading():
    """The price-taking market form: a TCL that sets the price gains by bidding lower."""
    bids = TclBids(["a", "b", "c"], [0.9, 0.6, 0.2], [4.0, 4.0, 4.0])
    cfg: dict[str, Any] = {"capacity_kw": 6.0, "duration_h": 1.0}
    uniform = truthful_tcl_mechanism(**cfg, pricing="uniform")
    probe = incentive_probe(uniform, bids, 1, tcl_misreports(bids, 1), truthful_tcl_utility)
    # Truthful, b is marginal and pays its own bid: utility 0. Bidding 0.3 it would still get
    # 2 kW at 0.3 (0.6 gained); reporting half its power, 2 kW, it is served whole and the price
    # falls to the highest losing bid, 0.2: 2 x (0.6 - 0.2) = 0.8 gained.
    assert probe.truthful_utility == pytest.approx(0.0)
    assert probe.gain == pytest.approx(0.8)
    assert "power x0.5" in probe.best_label
    vcg = truthful_tcl_mechanism(**cfg)
    assert (
        incentive_probe(vcg, bids, 1, tcl_misreports(bids, 1), truthful_tcl_utility).gain <= 1e-12
    )


def test_uniform_pricing_gain_fades_as_the_market_grows():
    """Part I's market argument: price takers cannot move the price in a large population."""
    mean_gain = {}
    for n in (4, 400):
        gains = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            price, power = rng.uniform(0.1, 1.0, n), rng.uniform(2.0, 4.0, n)
            bids = TclBids([f"t{i}" for i in range(n)], price, power)
            cfg: dict[str, Any] = {"capacity_kw": 0.5 * float(power.sum()), "duration_h": 1.0}
            mechanism = truthful_tcl_mechanism(**cfg, pricing="uniform")
            marginal = _probe_agents(mechanism(bids))[0]  # the price setter
            family = tcl_misreports(bids, marginal, price_factors=np.linspace(0.5, 1, 26).tolist())
            value = float(price[marginal] * power[marginal])
            probe = incentive_probe(
                mechanism, bids, marginal, family, truthful_tcl_utility, scale=value
            )
            gains.append(probe.gain_relative)
        mean_gain[n] = float(np.mean(gains))
    assert mean_gain[4] > 0.1  # among 4 TCLs the price setter gains > 10 % of its value
    assert mean_gain[400] < 0.05 * mean_gain[4]


# ---------------------------------------------------------------------- bid formation (Part I)


def _wide_band_houses(n: int, rng: np.random.Generator) -> HvacPopulation:
    """Houses without solar or latent gains, a band wide enough never to override a period."""
    setpoint = rng.uniform(22.0, 24.0, n)
    return HvacPopulation(
        ua_kw_per_k=rng.uniform(0.2, 0.5, n),
        mass_coupling_kw_per_k=rng.uniform(1.0, 3.0, n),
        air_capacity_kj_per_k=rng.uniform(800.0, 2000.0, n),
        mass_capacity_kj_per_k=rng.uniform(15000.0, 40000.0, n),
        setpoint_c=setpoint,
        comfort_min_c=setpoint - 8.0,
        comfort_max_c=setpoint + 8.0,
        cooling_capacity_kw=rng.uniform(6.0, 12.0, n),
        internal_gain_kw=rng.uniform(0.3, 1.0, n),
        fan_power_kw=0.3,
        air_temperature_c=setpoint + rng.uniform(-1.0, 1.0, n),
        mass_temperature_c=setpoint + rng.uniform(-1.0, 1.0, n),
        outdoor_temperature_c=33.0,
    )


@pytest.mark.parametrize("run", [True, False])
def test_the_discrete_etp_model_matches_the_hvac_population_step(run):
    """Independent reference: the population's own exact ETP step under direct control."""
    rng = np.random.default_rng(3)
    houses = _wide_band_houses(12, rng)
    model = tcl_model_from_hvac(houses, outdoor_temperature_c=33.0, dt_s=300.0)
    state = np.stack([houses.air_temperature_c, houses.mass_temperature_c], axis=1)
    predicted = model.advance(state, outdoor_temperature_c=33.0, on=float(run), steps=1)
    houses.command(np.full(12, run))
    step = houses.step(0, 300, WeatherSample(temperature_c=33.0))
    np.testing.assert_allclose(predicted[:, 0], houses.air_temperature_c, atol=1e-6)
    np.testing.assert_allclose(predicted[:, 1], houses.mass_temperature_c, atol=1e-6)
    expected_kw = model.rated_power_kw if run else np.zeros(12)
    np.testing.assert_allclose(step.power_kw, expected_kw, rtol=1e-9)


def test_bids_from_a_sampled_population_use_its_heat_inputs():
    """Solar and latent gains come from the population's heat inputs under the weather."""
    rng = np.random.default_rng(11)
    houses = HvacPopulation.sample(8, rng, outdoor_temperature_c=32.0)
    weather = WeatherSample(
        temperature_c=32.0, ghi_w_per_m2=700.0, dni_w_per_m2=600.0, dhi_w_per_m2=100.0,
        solar_zenith_deg=30.0, solar_azimuth_deg=180.0, relative_humidity=0.5,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="solar gains"):
        tcl_model_from_hvac(houses, outdoor_temperature_c=32.0, dt_s=300.0)
    heat = houses.heat_inputs(weather)
    model = tcl_model_from_hvac(houses, outdoor_temperature_c=32.0, dt_s=300.0, heat=heat)
    state = np.stack([houses.air_temperature_c, houses.mass_temperature_c], axis=1)
    off = model.advance(state, outdoor_temperature_c=32.0, on=0.0, steps=1)
    houses.command(np.zeros(8, dtype=bool))
    houses.step(0, 300, weather)
    np.testing.assert_allclose(off[:, 0], houses.air_temperature_c, atol=1e-6)
    bids = bids_from_hvac(
        HvacPopulation.sample(8, np.random.default_rng(11), outdoor_temperature_c=32.0),
        outdoor_temperature_c=32.0, duration_s=300.0, comfort_weight_per_k2=0.5, heat=heat,
    )  # fmt: skip
    np.testing.assert_array_equal(bids.ids, houses.ids)
    np.testing.assert_allclose(bids.power_kw, heat.electric_on_kw)


def test_the_bid_is_the_comfort_gained_per_kwh():
    # A one-node toy: air follows T' = 0.5 T + 0.5 To - 2 on (per step), mass decoupled.
    model = TclModel(
        ids=np.array(["warm", "cold", "hot"]),
        transition=np.tile([[0.5, 0.0], [0.0, 1.0]], (3, 1, 1)),
        input_gain=np.tile([[0.5, -2.0, 0.0], [0.0, 0.0, 0.0]], (3, 1, 1)),
        rated_power_kw=np.array([2.0, 2.0, 4.0]),
        dt_s=900.0,
    )
    state = np.array([[24.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    bids = tcl_bids(
        model, state, outdoor_temperature_c=30.0, setpoint_c=22.0, comfort_weight_per_k2=1.0,
        duration_s=900.0,
    )  # fmt: skip
    # warm: off 27, on 25 -> (25 - 9) = 16 gained over 2 kW x 0.25 h; cold: off 25, on 23 ->
    # 9 - 1 = 8 over 0.5 kWh; hot: off 30, on 28 -> 64 - 36 = 28 over 1 kWh.
    np.testing.assert_allclose(bids.price_per_kwh, [32.0, 16.0, 28.0])
    np.testing.assert_allclose(bids.power_kw, [2.0, 2.0, 4.0])
    colder = tcl_bids(
        model, np.array([[19.0, 0.0]] * 3), outdoor_temperature_c=18.0, setpoint_c=22.0,
        comfort_weight_per_k2=1.0, duration_s=900.0,
    )  # fmt: skip
    np.testing.assert_array_equal(colder.price_per_kwh, [0.0, 0.0, 0.0])  # cooling would hurt


def test_hotter_houses_bid_more():
    rng = np.random.default_rng(5)
    houses = _wide_band_houses(1, rng)
    prices = []
    for air in (23.0, 24.0, 25.0, 26.0):
        state = np.array([[air, 23.0]])
        model = tcl_model_from_hvac(houses, outdoor_temperature_c=33.0, dt_s=300.0)
        bid = tcl_bids(
            model, state, outdoor_temperature_c=33.0, setpoint_c=houses.setpoint_c,
            comfort_weight_per_k2=1.0, duration_s=300.0,
        )  # fmt: skip
        prices.append(float(bid.price_per_kwh[0]))
    assert prices == sorted(prices) and prices[-1] > prices[0]


# ---------------------------------------------------------------------- Part II: estimation


def _etp(ids, rng_params, dt_s, scale=None) -> TclModel:
    s = scale or {}
    p = {k: v * s.get(k, 1.0) for k, v in rng_params.items()}
    return TclModel.from_etp(
        ids=ids, ua_kw_per_k=p["ua"], mass_coupling_kw_per_k=p["hm"],
        air_capacity_kj_per_k=p["ca"], mass_capacity_kj_per_k=p["cm"], heat_on_kw=p["q_on"],
        heat_air_kw=p["q_air"], heat_mass_kw=p["q_mass"], rated_power_kw=3.0, dt_s=dt_s,
    )  # fmt: skip


def _simulate(model: TclModel, steps: int, rng, *, process_sd: float, measurement_sd: float):
    """Noisy houses under a deadband thermostat with random overrides (for excitation)."""
    n, dt = len(model), model.dt_s
    outdoor = 30.0 + 5.0 * np.sin(2 * np.pi * np.arange(steps) * dt / 86400.0)
    x = np.full((n, 2), 23.0)
    y, on = np.empty((steps, n)), np.empty((steps, n))
    thermostat = np.zeros(n, dtype=bool)
    for k in range(steps):
        y[k] = x[:, 0] + measurement_sd * rng.standard_normal(n)
        last = x.copy()
        thermostat = np.where(y[k] > 23.5, True, np.where(y[k] < 22.5, False, thermostat))
        run = thermostat ^ (rng.random(n) < 0.1)
        on[k] = run
        x = model.advance(x, outdoor_temperature_c=outdoor[k], on=run.astype(float), steps=1)
        x = x + process_sd * rng.standard_normal((n, 2))
    return y, outdoor, on, last


@pytest.fixture(scope="module")
def learning():
    """Ten houses, 4 days of 5-minute data, EM from a nominal model 20-30 % off, warm-started."""
    rng = np.random.default_rng(3)
    n, dt = 10, 300.0
    params = {
        "ua": rng.uniform(0.2, 0.4, n), "hm": rng.uniform(1.0, 3.0, n),
        "ca": rng.uniform(1000.0, 2000.0, n), "cm": rng.uniform(2e4, 4e4, n),
        "q_on": -rng.uniform(8.0, 12.0, n), "q_air": rng.uniform(0.3, 0.8, n),
        "q_mass": rng.uniform(0.3, 0.8, n),
    }  # fmt: skip
    ids = [f"house-{i}" for i in range(n)]
    true = _etp(ids, params, dt)
    nominal = _etp(
        ids, params, dt,
        {"ua": 1.25, "hm": 0.8, "ca": 1.3, "cm": 0.75, "q_on": 0.8, "q_air": 1.3, "q_mass": 0.7},
    )  # fmt: skip
    sd = {"process_sd": 0.005, "measurement_sd": 0.02}
    y, outdoor, on, _ = _simulate(true, 4 * 288, np.random.default_rng(14), **sd)
    rule = StoppingRule(tolerance=1e-9, max_rounds=30, min_rounds=2)
    day = estimate_tcl_model(y[:288], outdoor[:288], on[:288], initial=nominal, rule=rule)
    days = estimate_tcl_model(y, outdoor, on, initial=day.model, rule=rule)  # online: warm start

    def known(
        upto: int,
    ) -> Any:  # the true parameters, the mass temperature filtered on the same data
        return estimate_tcl_model(
            y[:upto], outdoor[:upto], on[:upto], initial=true,
            rule=StoppingRule(max_rounds=1, min_rounds=1),
            process_var_k2=sd["process_sd"] ** 2, measurement_var_k2=sd["measurement_sd"] ** 2,
        )  # fmt: skip

    return {"nominal": nominal, "day": day, "days": days, "known_day": known(288),
            "known_days": known(4 * 288)}  # fmt: skip


BID: dict[str, Any] = {
    "outdoor_temperature_c": 33.0,
    "setpoint_c": 21.0,
    "comfort_weight_per_k2": 2.0,
    "duration_s": 300.0,
}


def test_em_never_lowers_the_likelihood(learning):
    for name in ("day", "days"):
        ll = learning[name].log_likelihood
        assert ll.shape == (30, 10)
        assert np.all(np.diff(ll, axis=0) >= -1e-6 * np.abs(ll[1:]))
        assert not learning[name].converged and learning[name].stop_reason == "max_rounds"


def test_estimated_bids_approach_the_known_parameter_bids(learning):
    def error(estimate, known) -> float:
        b_est = bids_from_estimate(estimate, **BID).price_per_kwh
        b_known = bids_from_estimate(known, **BID).price_per_kwh
        return float(np.max(np.abs(b_est - b_known)) / np.max(b_known))

    nominal_state = learning["known_day"].state_c  # the nominal model from the true state
    b_nominal = tcl_bids(learning["nominal"], nominal_state, **BID).price_per_kwh
    b_known = bids_from_estimate(learning["known_day"], **BID).price_per_kwh
    nominal_error = float(np.max(np.abs(b_nominal - b_known)) / np.max(b_known))
    one_day = error(learning["day"], learning["known_day"])
    four_days = error(learning["days"], learning["known_days"])
    assert nominal_error > 0.1  # the nominal model is 20-30 % off: its bids are ~19 % off
    assert one_day < 0.05  # ~3 % after one day
    assert four_days < 0.02  # ~1 % after four
    assert four_days < one_day


def test_bids_from_estimates_are_truthful_for_the_estimating_tcl(learning):
    """Part II: a TCL that believes its estimate does best bidding it (VCG truthfulness)."""
    bids = bids_from_estimate(learning["days"], **BID)
    cfg: dict[str, Any] = {
        "capacity_kw": 0.4 * float(bids.power_kw.sum()),
        "duration_h": 300.0 / 3600.0,
    }
    mechanism = truthful_tcl_mechanism(**cfg)
    result = mechanism(bids)
    for agent in _probe_agents(result):
        probe = incentive_probe(
            mechanism, bids, agent, tcl_misreports(bids, agent), truthful_tcl_utility
        )
        assert probe.gain <= 1e-9 * float(np.sum(bids.price_per_kwh * bids.power_kw))


# ---------------------------------------------------------------------- bad input


def _fields(excinfo) -> set[str]:
    return {p.field for p in excinfo.value.problems}


def test_bad_bids_are_refused_with_every_problem():
    with pytest.raises(ValidationError) as err:
        TclBids(["a", "b", "c"], [0.1, np.nan, 0.2], [1.0, 2.0, -3.0])
    assert _fields(err) == {"price_per_kwh", "power_kw"}
    assert {p.index for p in err.value.problems} == {("b",), ("c",)}
    with pytest.raises(ValidationError, match="ids"):
        TclBids(["a", "b"], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])  # mismatched ids
    with pytest.raises(ValidationError, match="repeats"):
        TclBids(["a", "a"], [0.1, 0.2], [1.0, 1.0])
    with pytest.raises(ValidationError, match="power_kw"):
        TclBids(["a", "b"], [0.1, 0.2], [1.0])


def test_bad_market_settings_are_refused():
    bids = TclBids(["a"], [0.1], [1.0])
    with pytest.raises(ValidationError) as err:
        clear_truthful(bids, capacity_kw=0.0, duration_h=-1.0, reserve_price_per_kwh=np.nan)
    assert _fields(err) == {"capacity_kw", "duration_h", "reserve_price_per_kwh"}
    with pytest.raises(ValidationError, match="no headroom"):
        clear_truthful(bids, capacity_kw=5.0, base_load_kw=5.0, duration_h=1.0)
    with pytest.raises(ValidationError, match="pricing"):
        clear_truthful(bids, capacity_kw=5.0, duration_h=1.0, pricing="second")  # type: ignore[arg-type]


def test_bad_models_and_data_are_refused():
    with pytest.raises(ValidationError, match="transition"):
        TclModel(np.array(["a"]), np.eye(2), np.zeros((1, 2, 3)), np.array([1.0]), 60.0)
    model = TclModel(
        np.array(["a", "b"]), np.tile(np.eye(2) * 0.9, (2, 1, 1)), np.zeros((2, 2, 3)),
        np.array([1.0, 2.0]), 60.0,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="whole number"):
        tcl_bids(model, np.zeros((2, 2)), outdoor_temperature_c=30.0, setpoint_c=22.0,
                 comfort_weight_per_k2=1.0, duration_s=90.0)  # fmt: skip
    y = np.full((20, 2), 22.0)
    on = np.zeros((20, 2))
    on[::2, 0] = 1.0
    with pytest.raises(ValidationError) as err:
        estimate_tcl_model(y, np.full(20, 30.0), on, initial=model)
    messages = " ".join(str(p) for p in err.value.problems)
    assert "never changes" in messages and "entry b" in messages  # b never ran
    assert "outdoor_temperature_c" in _fields(err)
    with pytest.raises(ValidationError, match="shape"):
        estimate_tcl_model(y[:, :1], np.linspace(20, 30, 20), on[:, :1], initial=model)
