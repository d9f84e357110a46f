"""Convex OPF (SOCP relaxation and LinDistFlow) against AC power flow, DLMPs, flexible loads."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices.base import Horizon
from transactive.devices.flexibility import Flexibility
from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.opf import FlexibleAssets, Formulation, OpfModel, solve_opf
from transactive.network.powerflow import run_powerflow
from transactive.weather import WeatherSample

FAR_END = 17  # Baran & Wu bus 18, the end of the main feeder


@pytest.fixture(scope="module")
def case33() -> Feeder:
    return load_feeder("case33bw")


def flexibility(
    t: int,
    n: int,
    *,
    dt_s: int = 3600,
    baseline: npt.ArrayLike = 0.0,
    p_min: npt.ArrayLike = 0.0,
    p_max: npt.ArrayLike = 0.0,
    e_min: npt.ArrayLike = -1e6,
    e_max: npt.ArrayLike = 1e6,
    e0: npt.ArrayLike = 0.0,
    eta: float = 1.0,
) -> Flexibility:
    """A hand-built generalized battery: (T, N) bounds, as the devices' flexibility() gives."""

    def tn(value: npt.ArrayLike) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=float), (t, n)).copy()

    def per(value: npt.ArrayLike) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()

    return Flexibility(
        horizon=Horizon(0, dt_s, t),
        ids=np.asarray([f"asset-{i}" for i in range(n)]),
        baseline_kw=tn(baseline),
        power_min_kw=tn(p_min),
        power_max_kw=tn(p_max),
        energy_min_kwh=tn(e_min),
        energy_max_kwh=tn(e_max),
        initial_energy_kwh=per(e0),
        retention=np.ones(n),
        charge_efficiency=np.full(n, eta),
        discharge_efficiency=np.full(n, eta),
    )


def vb_far_end(t: int = 1) -> FlexibleAssets:
    """A thermostatic aggregate at the far end that can shed at a discomfort cost."""
    flex = flexibility(t, 1, baseline=150.0, p_min=-150.0, p_max=150.0, e_min=-1e3, e_max=1e3)
    return FlexibleAssets(flex, [FAR_END], cost_per_kwh=0.5)


def rated_one(feeder: Feeder, branch: int, kva: float) -> Feeder:
    """The feeder with only ``branch`` (a line) rated, at the current of ``kva`` at 12.66 kV."""
    line = int(feeder.branch_element[branch])
    i_ka = kva / (np.sqrt(3.0) * feeder.vn_kv[feeder.branch_to[branch]] * 1000.0)
    return feeder.with_line_ratings({line: i_ka})


def test_socp_matches_ac_power_flow(case33: Feeder) -> None:
    res = solve_opf(case33, 0.1, formulation="socp")
    assert res.optimal
    assert res.relaxation_exact
    assert res.relaxation_gap is not None
    assert res.relaxation_gap < 1e-4
    check = res.ac_check
    assert check is not None
    assert check.converged.all()
    assert check.max_vm_error_pu < 1e-3
    assert check.max_losses_error_pct < 1.0
    # and the published base case (fixed loads: the OPF is the power flow)
    assert res.losses_kw[0] == pytest.approx(202.67, rel=1e-3)
    assert res.vm_pu[0, FAR_END] == pytest.approx(0.9131, abs=1e-4)
    assert res.substation_p_kw[0] == pytest.approx(3715.0 + res.losses_kw[0], rel=1e-5)


def test_lindistflow_voltages_within_one_percent(case33: Feeder) -> None:
    res = solve_opf(case33, 0.1, formulation="lindistflow")
    assert res.optimal
    assert res.relaxation_gap is None
    assert res.ac_check is not None
    assert res.ac_check.max_vm_error_pu < 0.01
    # lossless: the substation supplies exactly the load
    assert res.substation_p_kw[0] == pytest.approx(3715.0, rel=1e-6)


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_dpp_with_every_flexible_load(case33: Feeder, formulation: Formulation) -> None:
    model = OpfModel(
        case33,
        formulation=formulation,
        periods=4,
        dt_s=3600.0,
        flexible=[
            FlexibleAssets(
                flexibility(4, 1, p_max=7.0, e_min=[[0], [0], [0], [10]], e_max=10), [5]
            ),
            FlexibleAssets(flexibility(4, 1, p_min=-50, p_max=50, e_min=0, e_max=100, e0=50), [9]),
            FlexibleAssets(
                flexibility(4, 1, baseline=20, p_min=-20, p_max=20, e_min=-30, e_max=30),
                [12],
                cost_per_kwh=0.01,
            ),
        ],
        substation_kva=10_000.0,
    )
    assert model.problem.is_dpp()
    assert model.dpp_cache


def test_dlmp_components_sum_and_equal_duals(case33: Feeder) -> None:
    res = solve_opf(case33, 0.1, formulation="socp", ac_check=False)
    d = res.dlmp
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)
    assert d.residual < 1e-8
    np.testing.assert_allclose(d.energy, 0.1)
    assert d.total[0, case33.slack] == pytest.approx(0.1)
    # losses make power dearer downstream, most at the far end of the main feeder
    assert np.all(d.loss[0, np.arange(33) != case33.slack] > 0)
    assert int(np.argmax(d.total[0])) == FAR_END
    np.testing.assert_allclose(d.congestion, 0.0, atol=1e-8)
    np.testing.assert_allclose(d.voltage, 0.0, atol=1e-8)


def test_dlmp_is_marginal_cost(case33: Feeder) -> None:
    """One more kW at a node for one hour costs its DLMP (finite difference)."""
    model = OpfModel(case33, formulation="socp")
    base = model.solve(0.1, ac_check=False)
    for node in (5, FAR_END, 32):
        p = np.array(case33.net_p_kw)
        p[node] += 1.0
        bumped = model.solve(0.1, p_kw=p, ac_check=False)
        assert bumped.cost - base.cost == pytest.approx(base.dlmp.total[0, node], rel=2e-3)


def test_lindistflow_uncongested_dlmp_is_energy_price(case33: Feeder) -> None:
    price = np.array([0.05, 0.2, 0.1])
    res = solve_opf(case33, price, formulation="lindistflow", ac_check=False)
    d = res.dlmp
    np.testing.assert_allclose(d.total, np.broadcast_to(price[:, None], (3, 33)), atol=1e-6)
    np.testing.assert_allclose(d.loss, 0.0)


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_congestion_component(case33: Feeder, formulation: Formulation) -> None:
    limited = int(case33.parent_branch[FAR_END])
    model = OpfModel(
        rated_one(case33, limited, 150.0), formulation=formulation, flexible=vb_far_end()
    )
    res = model.solve(0.1)
    assert res.optimal
    # the aggregate sheds load to respect the rating
    assert res.flexible_kw[0, 0] < 150.0 - 1.0
    assert res.branch_loading_pct[0, limited] <= 100.0 + 1e-3
    # SOCP: the current limit itself; LinDistFlow: a 16-gon inscribed in the circle
    # (cos(π/16) = 0.981) times the chord of √v (at most 0.5 % below it for 0.9-1.1 pu)
    floor = 99.0 if formulation == "socp" else 100.0 * np.cos(np.pi / 16) * 0.995 - 0.1
    assert res.branch_loading_pct[0, limited] > floor
    assert np.isnan(np.delete(res.branch_loading_pct[0], limited)).all()  # unrated
    d = res.dlmp
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)
    assert d.residual < 1e-6
    assert d.congestion[0, FAR_END] > 0.1
    # a current limit |S| <= I_max |V| also tightens when the voltage upstream falls, so the
    # nodes that feed the line see a small congestion price too (not so an |S| limit)
    upstream = np.arange(33) != FAR_END
    assert np.all(np.abs(d.congestion[0, upstream]) < 0.02 * d.congestion[0, FAR_END])
    # the shedding aggregate is marginal: its node's price is its discomfort cost
    assert d.total[0, FAR_END] == pytest.approx(0.5, rel=1e-4)


def test_voltage_component(case33: Feeder) -> None:
    model = OpfModel(case33, formulation="socp", flexible=vb_far_end())
    res = model.solve(0.1, vmin_pu=0.91)
    assert res.optimal
    assert res.vmin_pu == pytest.approx(0.91, abs=1e-6)
    d = res.dlmp
    assert d.voltage[0, FAR_END] > 0.1
    assert np.all(d.voltage[0] >= -1e-9)
    np.testing.assert_allclose(d.congestion, 0.0, atol=1e-8)
    assert d.total[0, FAR_END] == pytest.approx(0.5, rel=1e-4)


def test_battery_over_a_day(case33: Feeder) -> None:
    hours = np.arange(24)
    price = np.where((hours >= 8) & (hours < 20), 0.3, 0.05)
    load_shape = 0.6 + 0.4 * np.sin(np.pi * hours / 24)
    p = np.outer(load_shape, case33.net_p_kw)  # (T, N), time first
    q = np.outer(load_shape, case33.net_q_kvar)
    cap = np.array([300.0, 200.0])
    e_min = np.tile(0.1 * cap, (24, 1))
    e_min[-1] = 0.5 * cap  # back to the start by the end of the day
    flex = flexibility(
        24,
        2,
        p_min=[-100, -60],
        p_max=[100, 60],
        e_min=e_min,
        e_max=0.9 * cap,
        e0=0.5 * cap,
        eta=0.95,
    )
    model = OpfModel(
        case33, formulation="socp", periods=24, flexible=FlexibleAssets(flex, [FAR_END, 30])
    )
    res = model.solve(price, p, q, ac_check=False)
    assert res.optimal
    assert res.relaxation_exact
    e = res.flexible_energy_kwh
    assert e.shape == (24, 2)
    assert np.all(e >= 0.1 * cap - 1e-6)
    assert np.all(e <= 0.9 * cap + 1e-6)
    assert np.all(e[-1] >= 0.5 * cap - 1e-6)
    # the recursion holds with the net power split into charge and discharge
    power = res.flexible_kw
    charge, discharge = np.clip(power, 0, None), np.clip(-power, 0, None)
    stored = np.diff(np.vstack([0.5 * cap, e]), axis=0)
    np.testing.assert_allclose(stored, 0.95 * charge - discharge / 0.95, atol=1e-4)
    # arbitrage: buy at night, sell by day
    assert (power.T * price).sum() < 0
    assert power[price == 0.3].sum() < 0


def test_ev_energy_by_deadline(case33: Feeder) -> None:
    """EVs: charge only while plugged, hold the need by departure (the Flexibility of an EV)."""
    price = np.array([0.3, 0.3, 0.1, 0.05, 0.2, 0.3, 0.05, 0.05])
    need = np.array([7.8, 15.0, 3.0])
    windows = [(0, 4), (1, 6), (2, 5)]
    p_max = np.zeros((8, 3))
    e_min = np.zeros((8, 3))
    for i, (a, b) in enumerate(windows):
        p_max[a:b, i] = [7.0, 11.0, 7.0][i]
        e_min[b - 1 :, i] = need[i]
    flex = Flexibility(
        horizon=Horizon(0, 3600, 8),
        ids=np.asarray(["ev-0", "ev-1", "ev-2"]),
        baseline_kw=np.zeros((8, 3)),
        power_min_kw=np.zeros((8, 3)),
        power_max_kw=p_max,
        energy_min_kwh=e_min,
        energy_max_kwh=np.tile(need, (8, 1)),
        initial_energy_kwh=np.zeros(3),
        retention=np.ones(3),
        charge_efficiency=np.array([1.0, 0.9, 1.0]),
        discharge_efficiency=np.ones(3),
    )
    res = solve_opf(
        case33,
        price,
        formulation="lindistflow",
        flexible=FlexibleAssets(flex, [10, 20, 30]),
        ac_check=False,
    )
    assert res.optimal
    ev = res.flexible_kw
    assert ev.shape == (8, 3)
    assert list(res.flexible_ids) == ["ev-0", "ev-1", "ev-2"]
    np.testing.assert_allclose(ev.sum(axis=0), need / [1.0, 0.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(ev[p_max == 0], 0.0, atol=1e-6)
    # EV 0 charges in the cheapest hours of its window: 7 kW at 0.05, 0.8 kW at 0.1
    np.testing.assert_allclose(ev[:4, 0], [0.0, 0.0, 0.8, 7.0], atol=1e-4)


def test_inexact_relaxation_is_reported(case33: Feeder) -> None:
    """A negative price rewards burning power: the SOCP inflates ℓ and the cones go slack."""
    res = solve_opf(case33, -0.1, formulation="socp")
    assert res.optimal
    assert res.relaxation_exact is False
    assert res.relaxation_gap is not None
    assert res.relaxation_gap > 0.1
    assert res.ac_check is not None
    assert res.losses_kw[0] > 10 * res.ac_check.losses_kw[0]


def test_resolve_equals_fresh_build(case33: Feeder) -> None:
    model = OpfModel(case33, formulation="socp", periods=2)
    model.solve([0.1, 0.2], ac_check=False)
    again = model.solve([0.3, 0.1], 0.8 * case33.net_p_kw, ac_check=False)
    fresh = solve_opf(case33, [0.3, 0.1], 0.8 * case33.net_p_kw, ac_check=False)
    assert again.cost == pytest.approx(fresh.cost, rel=1e-6)
    np.testing.assert_allclose(again.dlmp.total, fresh.dlmp.total, rtol=1e-5)


def test_substation_rating(case33: Feeder) -> None:
    res = solve_opf(case33, 0.1, flexible=vb_far_end(), substation_kva=4700.0)
    assert res.optimal
    apparent = np.hypot(res.substation_p_kw[0], res.substation_q_kvar[0])
    assert apparent <= 4700.0 * (1 + 1e-5)
    assert res.flexible_kw[0, 0] < 150.0 - 1.0
    d = res.dlmp
    assert d.congestion[0, case33.slack] > 0  # the rating prices every node
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)


def test_bad_inputs(case33: Feeder) -> None:
    with pytest.raises(ValidationError) as info:
        OpfModel(case33, periods=3, flexible=FlexibleAssets(flexibility(2, 1), [40]))
    text = str(info.value)
    assert "has 2 periods, the OPF 3" in text
    assert "node index out of range" in text
    with pytest.raises(ValidationError, match="one node per device"):
        OpfModel(case33, flexible=FlexibleAssets(flexibility(1, 2), [3]))
    with pytest.raises(ValidationError, match="formulation"):
        OpfModel(case33, formulation="dc")  # type: ignore[arg-type]
    model = OpfModel(case33, periods=2)
    with pytest.raises(ValidationError, match="p_kw"):
        model.solve(0.1, np.zeros((3, 33)))
    with pytest.raises(ValidationError, match="built without them"):
        model.solve(0.1, flexible=FlexibleAssets(flexibility(2, 1), [1]))
    with pytest.raises(ValidationError, match="rates a branch the model was built unrated"):
        model.solve(0.1, i_max_ka=np.full(32, 0.3))
    with pytest.raises(ValidationError, match="is not a number"):
        model.solve(0.1, i_max_ka=np.full(32, np.nan))
    meshed = copy.deepcopy(case33.net)
    meshed.line["in_service"] = True
    with pytest.raises(ValidationError, match="meshed"):
        OpfModel(feeder_from_net(meshed))


def test_infeasible_reports_status(case33: Feeder) -> None:
    res = solve_opf(case33.with_line_ratings(0.005), 0.1, ac_check=False)
    assert not res.optimal
    assert "infeasible" in res.status
    assert np.isnan(res.cost)


@pytest.fixture(scope="module")
def mv_rural() -> Feeder:
    return load_feeder("1-MV-rural--0-sw")


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_simbench_mv_against_ac(mv_rural: Feeder, formulation: Formulation) -> None:
    res = solve_opf(
        mv_rural,
        0.1,
        0.5 * mv_rural.load_p_kw,
        0.5 * mv_rural.load_q_kvar,
        formulation=formulation,
    )
    assert res.optimal
    assert res.ac_check is not None
    d = res.dlmp
    assert d.residual < 1e-6
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)
    np.testing.assert_allclose(d.energy, 0.1)
    if formulation == "socp":
        assert res.relaxation_exact
        # line charging and transformer magnetizing are node shunts; the AC model places the
        # magnetizing branch inside the transformer (T model), hence not a perfect match
        assert res.ac_check.max_vm_error_pu < 1e-3
        assert res.ac_check.max_losses_error_pct < 1.0
    else:
        assert res.ac_check.max_vm_error_pu < 0.01
        # the iron losses (shunt conductance at the substation) are LinDistFlow's only losses
        iron_kw = float(mv_rural.net.trafo.pfe_kw.sum())  # at the slack's voltage squared
        expected = 0.5 * mv_rural.load_p_kw.sum() + iron_kw * res.vm_pu[0, mv_rural.slack] ** 2
        assert res.substation_p_kw[0] == pytest.approx(expected, rel=1e-6)


def test_highs_for_lindistflow(case33: Feeder) -> None:
    rated = rated_one(case33, int(case33.parent_branch[FAR_END]), 150.0)
    results = [
        OpfModel(rated, formulation="lindistflow", flexible=vb_far_end(), solver=solver).solve(
            0.1, ac_check=False
        )
        for solver in ("CLARABEL", "HIGHS")
    ]
    assert results[0].cost == pytest.approx(results[1].cost, rel=1e-6)
    np.testing.assert_allclose(results[0].dlmp.total, results[1].dlmp.total, atol=1e-6)
    with pytest.raises(ValidationError, match="second-order cones"):
        OpfModel(case33, formulation="socp", solver="HIGHS")


@settings(max_examples=8, deadline=None)
@given(
    scale=st.lists(st.floats(0.1, 1.0), min_size=33, max_size=33),
    price=st.floats(0.01, 1.0),
)
def test_socp_exact_for_any_light_loading(case33: Feeder, scale: list[float], price: float) -> None:
    """Positive prices, loads only: the relaxation is exact and matches the AC power flow."""
    p = np.asarray(case33.net_p_kw) * np.asarray(scale)
    q = np.asarray(case33.net_q_kvar) * np.asarray(scale)
    res = solve_opf(case33, price, p, q)
    assert res.optimal
    assert res.relaxation_exact
    assert res.ac_check is not None
    assert res.ac_check.max_vm_error_pu < 1e-3
    assert res.ac_check.max_losses_error_pct < 1.0
    d = res.dlmp
    assert d.residual < 1e-6 * price / 0.1
    assert np.all(d.total[0] >= price - 1e-9)  # losses only make power dearer downstream


@pytest.mark.parametrize("side", ["hv", "lv"])
def test_tap_changer_ratio_matches_ac(side: str) -> None:
    """Off-nominal ratios (ideal transformer at the substation end) reproduce pandapower."""
    net = copy.deepcopy(load_feeder("cigre_lv").net)
    net.trafo["tap_changer_type"] = "Ratio"
    net.trafo["tap_side"] = side
    net.trafo["tap_neutral"] = 0.0
    net.trafo["tap_pos"] = 2.0
    net.trafo["tap_step_percent"] = 2.5
    feeder = feeder_from_net(net, name=f"cigre_lv tapped on {side}")
    expected = 1.05 if side == "hv" else 1.0 / 1.05
    kinds = np.asarray(feeder.branch_kind)
    np.testing.assert_allclose(np.asarray(feeder.branch_ratio)[kinds == "trafo"], expected)
    res = OpfModel(feeder).solve(0.1, vmin_pu=0.8)
    assert res.optimal
    assert res.relaxation_exact
    assert res.ac_check is not None
    assert res.ac_check.max_vm_error_pu < 1e-6
    assert res.ac_check.max_losses_error_pct < 1e-3


# ---------------------------------------------------------------------- one thermal limit


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_branch_loading_agrees_with_pandapower(case33: Feeder, formulation: Formulation) -> None:
    """case33bw with real ratings: the OPF's loading is pandapower's loading_percent.

    The issue this closes found the OPF (|S| at nominal voltage) 6.9 percentage points off
    pandapower's current-based loading at the same operating point. The SOCP now limits the
    branch flow model's current, so at an exact relaxation it is pandapower's current;
    LinDistFlow's current is |S|/V at its lossless flows (a few points low: no losses).
    """
    rated = case33.with_line_ratings(0.4)
    res = solve_opf(rated, 0.1, formulation=formulation)
    assert res.optimal and res.ac_check is not None
    opf_loading = res.branch_loading_pct[0]
    ac_loading = res.ac_check.branch_loading_pct[0]
    pf_line = np.full(rated.n_branches, np.nan)
    pf = run_powerflow(rated)
    for line, branch in rated.line_branch.items():
        pf_line[branch] = pf.line_loading_pct[list(pf.line_index).index(line)]
    np.testing.assert_allclose(ac_loading, pf_line, rtol=1e-9)  # the AC check is pandapower
    gap = np.nanmax(np.abs(opf_loading - ac_loading))
    if formulation == "socp":
        assert gap < 1e-3
    else:
        assert gap < 3.0
        assert np.all(opf_loading <= ac_loading + 1e-6)  # lossless flows are lower


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_binding_current_limit_holds_in_the_ac_power_flow(
    case33: Feeder, formulation: Formulation
) -> None:
    """A deferrable load behind a rated line: the limit binds, is priced, and holds in AC."""
    limited = int(case33.parent_branch[29])
    base = run_powerflow(case33)
    rated = case33.with_line_ratings(
        {int(case33.branch_element[limited]): 1.1 * float(base.branch_i_to_ka[limited])}
    )
    # 400 kWh by the end of 4 hours at up to 300 kW; energy is cheapest in period 0
    e_min = np.zeros((4, 1))
    e_min[-1] = 400.0
    flex = flexibility(4, 1, p_max=300.0, e_min=e_min, e_max=400.0)
    res = solve_opf(
        rated,
        [0.05, 0.1, 0.1, 0.1],
        formulation=formulation,
        flexible=FlexibleAssets(flex, [31]),
    )
    assert res.optimal and res.ac_check is not None
    assert res.flexible_kw[:, 0].sum() == pytest.approx(400.0, rel=1e-6)
    assert res.flexible_kw[0, 0] < 300.0 - 1.0  # the rating holds the cheap period back
    assert res.branch_loading_pct[0, limited] == pytest.approx(
        100.0 if formulation == "socp" else 100.0 * np.cos(np.pi / 16), abs=0.6
    )
    assert res.ac_check.branch_loading_pct[0, limited] <= 100.0 + 0.05
    d = res.dlmp
    assert d.residual < 1e-6
    assert d.congestion[0, 31] > 0.01  # the line's shadow price at the load's node


def test_flexible_assets_from_a_population(case33: Feeder) -> None:
    """The adapter asks the population for its flexibility and places it on the nodes."""

    class Fixed:
        ids = np.asarray(["a", "b"])

        def flexibility(self, horizon: Horizon, weather: object) -> Flexibility:
            return flexibility(
                horizon.n_periods, 2, dt_s=horizon.period_s, p_max=5.0, e_min=0.0, e_max=10.0
            )

    fixed: Any = Fixed()
    block = FlexibleAssets.from_population(fixed, [3, 4], Horizon(0, 3600, 2), [])
    assert block.flexibility.n_devices == 2
    joined = FlexibleAssets.concat([block, vb_far_end(2)])
    assert list(joined.flexibility.ids) == ["asset-0", "asset-1", "asset-0"]
    np.testing.assert_array_equal(joined.bus, [3, 4, FAR_END])
    np.testing.assert_allclose(np.asarray(joined.cost_per_kwh), np.array([0.0, 0.0, 0.5]))
    with pytest.raises(ValidationError, match="another horizon"):
        FlexibleAssets.concat([block, vb_far_end(1)])


def test_end_to_end_from_a_battery_population(case33: Feeder) -> None:
    """A sampled BatteryPopulation's own flexibility() is the OPF's model of it."""
    from transactive.devices.battery import BatteryPopulation  # noqa: PLC0415

    pop = BatteryPopulation.sample(20, np.random.default_rng(3))
    horizon = Horizon(0, 3600, 6)
    weather = [WeatherSample(temperature_c=20.0)] * 6  # batteries do not read it
    block = FlexibleAssets.from_population(pop, np.full(20, FAR_END), horizon, weather)
    price = np.array([0.05, 0.05, 0.3, 0.3, 0.1, 0.1])
    res = solve_opf(case33, price, formulation="lindistflow", flexible=block, ac_check=False)
    assert res.optimal
    flex = block.flexibility
    assert res.flexible_kw.shape == (6, 20)
    assert list(res.flexible_ids) == list(pop.ids)
    assert np.all(res.flexible_kw >= flex.power_min_kw - 1e-6)
    assert np.all(res.flexible_kw <= flex.power_max_kw + 1e-6)
    assert np.all(res.flexible_energy_kwh >= flex.energy_min_kwh - 1e-6)
    assert np.all(res.flexible_energy_kwh <= flex.energy_max_kwh + 1e-6)
    # arbitrage against the price: charge when cheap, discharge when dear
    assert res.flexible_kw[:2].sum() > 0 > res.flexible_kw[2:4].sum()


def test_end_to_end_from_an_ev_fleet(case33: Feeder) -> None:
    """A sampled EV fleet's flexibility(): every EV gets its need by departure, at least cost."""
    from transactive.devices.ev import EVPopulation  # noqa: PLC0415

    pop = EVPopulation.sample(15, np.random.default_rng(5))
    horizon = Horizon(0, 3600, 36)  # midnight of day one to noon of day two
    weather = [WeatherSample(temperature_c=20.0)] * 36
    block = FlexibleAssets.from_population(pop, np.full(15, FAR_END), horizon, weather)
    price = np.where((np.arange(36) % 24) < 6, 0.05, 0.25)  # cheap from midnight to six
    res = solve_opf(case33, price, formulation="lindistflow", flexible=block, ac_check=False)
    assert res.optimal
    assert list(res.flexible_ids) == list(pop.ids)
    flex = block.flexibility
    assert np.all(res.flexible_kw >= -1e-6)  # no vehicle-to-grid
    assert np.all(res.flexible_kw <= flex.power_max_kw + 1e-6)
    # each EV's delivered energy at the end of the horizon covers its need
    np.testing.assert_allclose(
        res.flexible_energy_kwh[-1], np.minimum(flex.energy_max_kwh[-1], pop.energy_needed_kwh)
    )
    # the energy goes where it is cheap: the fleet charges only in the cheap hours it can use
    best = pop.best_response(price, horizon, weather)
    np.testing.assert_allclose(
        (res.flexible_kw * price[:, None]).sum(), (best.power_kw * price[:, None]).sum(), rtol=1e-5
    )


def test_end_to_end_from_hvac_virtual_batteries(case33: Feeder) -> None:
    """HVAC's per-house virtual batteries enter the OPF and their schedule keeps every bound."""
    from transactive.devices.hvac import HvacPopulation  # noqa: PLC0415

    houses = HvacPopulation.sample(30, np.random.default_rng(8), mode="cooling")
    weather = [WeatherSample(temperature_c=32.0, ghi_w_per_m2=600.0)] * 8
    for k in range(240):  # four hours of thermostat cycling: houses in their own cycle
        houses.step(60 * k, 60, weather[0])
    horizon = Horizon(240 * 60, 900, 8)
    block = FlexibleAssets.from_population(houses, np.full(30, FAR_END), horizon, weather)
    price = np.array([0.05, 0.05, 0.05, 0.05, 0.4, 0.4, 0.4, 0.4])
    res = solve_opf(
        case33, price, formulation="lindistflow", flexible=block, ac_check=False, dt_s=900.0
    )
    assert res.optimal
    flex = block.flexibility
    deviation = res.flexible_kw - flex.baseline_kw
    assert np.all(deviation >= flex.power_min_kw - 1e-6)
    assert np.all(deviation <= flex.power_max_kw + 1e-6)
    assert np.all(res.flexible_energy_kwh >= flex.energy_min_kwh - 1e-6)
    assert np.all(res.flexible_energy_kwh <= flex.energy_max_kwh + 1e-6)
    # pre-cooling: the fleet draws more, against its baseline, while cheap than when dear
    assert deviation[:4].sum() > deviation[4:].sum()
    assert deviation[4:].sum() < 0
