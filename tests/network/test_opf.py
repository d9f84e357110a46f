"""Convex OPF (SOCP relaxation and LinDistFlow) against AC power flow, DLMPs, flexible loads."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.opf import (
    Batteries,
    EVLoads,
    Formulation,
    OpfModel,
    VirtualBatteries,
    solve_opf,
)
from transactive.prosumer.virtual_battery import VirtualBattery

FAR_END = 17  # Baran & Wu bus 18, the end of the main feeder


@pytest.fixture(scope="module")
def case33() -> Feeder:
    return load_feeder("case33bw")


@pytest.fixture(scope="module")
def vb_far_end() -> VirtualBatteries:
    """A thermostatic aggregate at the far end that can shed at a discomfort cost."""
    return VirtualBatteries(
        bus=[FAR_END],
        power_min_kw=-150.0,
        power_max_kw=150.0,
        energy_capacity_kwh=1000.0,
        dissipation_per_s=0.0,
        baseline_kw=150.0,
        discomfort_per_kwh=0.5,
    )


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
    assert res.vm_pu[FAR_END, 0] == pytest.approx(0.9131, abs=1e-4)
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
        evs=EVLoads(bus=[5], power_max_kw=7.0, energy_kwh=10.0, arrival=0, departure=4),
        batteries=Batteries(bus=[9], charge_max_kw=50, discharge_max_kw=50, capacity_kwh=100),
        virtual_batteries=VirtualBatteries(
            bus=[12],
            power_min_kw=-20,
            power_max_kw=20,
            energy_capacity_kwh=30,
            dissipation_per_s=1e-4,
            baseline_kw=20,
        ),
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
    assert d.total[case33.slack, 0] == pytest.approx(0.1)
    # losses make power dearer downstream, most at the far end of the main feeder
    assert np.all(d.loss[np.arange(33) != case33.slack] > 0)
    assert int(np.argmax(d.total[:, 0])) == FAR_END
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
        assert bumped.cost - base.cost == pytest.approx(base.dlmp.total[node, 0], rel=2e-3)


def test_lindistflow_uncongested_dlmp_is_energy_price(case33: Feeder) -> None:
    price = np.array([0.05, 0.2, 0.1])
    res = solve_opf(case33, price, formulation="lindistflow", ac_check=False)
    d = res.dlmp
    np.testing.assert_allclose(d.total, np.broadcast_to(price, (33, 3)), atol=1e-6)
    np.testing.assert_allclose(d.loss, 0.0)


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_congestion_component(
    case33: Feeder, vb_far_end: VirtualBatteries, formulation: Formulation
) -> None:
    limits = np.array(case33.branch_s_max_kva, dtype=np.float64)
    limited = int(case33.parent_branch[FAR_END])
    limits[limited] = 150.0
    model = OpfModel(case33, formulation=formulation, virtual_batteries=vb_far_end)
    res = model.solve(0.1, s_max_kva=limits)
    assert res.optimal
    # the aggregate sheds load to respect the rating
    assert res.vb_kw[0, 0] < 150.0 - 1.0
    assert res.branch_loading_pct[limited, 0] <= 100.0 + 1e-3
    # SOCP: the circle itself; LinDistFlow: a 16-gon inscribed in it (cos(π/16) = 0.981)
    floor = 99.0 if formulation == "socp" else 100.0 * np.cos(np.pi / 16) - 0.1
    assert res.branch_loading_pct[limited, 0] > floor
    d = res.dlmp
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)
    assert d.residual < 1e-6
    assert d.congestion[FAR_END, 0] > 0.1
    upstream = np.arange(33) != FAR_END
    np.testing.assert_allclose(d.congestion[upstream, 0], 0.0, atol=1e-6)
    # the shedding aggregate is marginal: its node's price is its discomfort cost
    assert d.total[FAR_END, 0] == pytest.approx(0.5, rel=1e-4)


def test_voltage_component(case33: Feeder, vb_far_end: VirtualBatteries) -> None:
    model = OpfModel(case33, formulation="socp", virtual_batteries=vb_far_end)
    res = model.solve(0.1, vmin_pu=0.91)
    assert res.optimal
    assert res.vmin_pu == pytest.approx(0.91, abs=1e-6)
    d = res.dlmp
    assert d.voltage[FAR_END, 0] > 0.1
    assert np.all(d.voltage[:, 0] >= -1e-9)
    np.testing.assert_allclose(d.congestion, 0.0, atol=1e-8)
    assert d.total[FAR_END, 0] == pytest.approx(0.5, rel=1e-4)


def test_battery_over_a_day(case33: Feeder) -> None:
    hours = np.arange(24)
    price = np.where((hours >= 8) & (hours < 20), 0.3, 0.05)
    load_shape = 0.6 + 0.4 * np.sin(np.pi * hours / 24)
    p = np.outer(case33.net_p_kw, load_shape)
    q = np.outer(case33.net_q_kvar, load_shape)
    bat = Batteries(
        bus=[FAR_END, 30],
        charge_max_kw=[100, 60],
        discharge_max_kw=[100, 60],
        capacity_kwh=[300, 200],
        soc_init_pu=0.5,
        soc_min_pu=0.1,
        soc_max_pu=0.9,
        efficiency_charge=0.95,
        efficiency_discharge=0.95,
    )
    model = OpfModel(case33, formulation="socp", periods=24, batteries=bat)
    res = model.solve(price, p, q, ac_check=False)
    assert res.optimal
    assert res.relaxation_exact
    e = res.battery_energy_kwh
    cap = np.array([[300.0], [200.0]])
    assert np.all(e >= 0.1 * cap - 1e-6)
    assert np.all(e <= 0.9 * cap + 1e-6)
    assert np.all(e[:, -1] >= 0.5 * cap[:, 0] - 1e-6)
    # the recursion holds with the net power split into charge and discharge
    charge = np.clip(res.battery_kw, 0, None)
    discharge = np.clip(-res.battery_kw, 0, None)
    np.testing.assert_allclose(np.diff(e, axis=1), 0.95 * charge - discharge / 0.95, atol=1e-4)
    # arbitrage: buy at night, sell by day
    assert (res.battery_kw * price).sum() < 0
    assert res.battery_kw[:, price == 0.3].sum() < 0


def test_ev_energy_by_deadline(case33: Feeder) -> None:
    price = np.array([0.3, 0.3, 0.1, 0.05, 0.2, 0.3, 0.05, 0.05])
    evs = EVLoads(
        bus=[10, 20, 30],
        power_max_kw=[7.0, 11.0, 7.0],
        energy_kwh=[7.8, 15.0, 3.0],
        arrival=[0, 1, 2],
        departure=[4, 6, 5],
        efficiency=[1.0, 0.9, 1.0],
    )
    res = solve_opf(case33, price, formulation="lindistflow", evs=evs, ac_check=False)
    assert res.optimal
    ev = res.ev_kw
    np.testing.assert_allclose(ev.sum(axis=1), [7.8, 15.0 / 0.9, 3.0], rtol=1e-6)
    window = np.zeros((3, 8), dtype=bool)
    for i, (a, b) in enumerate([(0, 4), (1, 6), (2, 5)]):
        window[i, a:b] = True
    np.testing.assert_allclose(ev[~window], 0.0, atol=1e-6)
    assert np.all(ev <= np.array([[7.0], [11.0], [7.0]]) + 1e-6)
    # EV 0 charges in the cheapest hours of its window: 7 kW at 0.05, 0.8 kW at 0.1
    np.testing.assert_allclose(ev[0, :4], [0.0, 0.0, 0.8, 7.0], atol=1e-4)


def test_virtual_battery_follows_prosumer_model(case33: Feeder) -> None:
    vb = VirtualBattery(
        power_min_kw=-40.0,
        power_max_kw=30.0,
        energy_capacity_kwh=25.0,
        dissipation_per_s=2e-4,
        baseline_kw=40.0,
    )
    stacked = VirtualBatteries.stack([FAR_END], [vb], discomfort_per_kwh=0.01)
    price = np.array([0.05, 0.05, 0.4, 0.4, 0.1, 0.1])
    res = solve_opf(
        case33,
        price,
        formulation="lindistflow",
        dt_s=1800.0,
        virtual_batteries=stacked,
        ac_check=False,
    )
    assert res.optimal
    u = res.vb_kw[0] - 40.0
    assert np.all(u >= -40.0 - 1e-6)
    assert np.all(u <= 30.0 + 1e-6)
    expected = vb.energy_trajectory_kwh(u, 1800.0)
    np.testing.assert_allclose(res.vb_energy_kwh[0, 1:], expected, atol=1e-5)
    assert np.all(np.abs(res.vb_energy_kwh) <= 25.0 + 1e-6)
    assert u[:2].sum() > 0 > u[2:4].sum()  # pre-consume when cheap


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


def test_substation_rating(case33: Feeder, vb_far_end: VirtualBatteries) -> None:
    res = solve_opf(case33, 0.1, virtual_batteries=vb_far_end, substation_kva=4700.0)
    assert res.optimal
    apparent = np.hypot(res.substation_p_kw[0], res.substation_q_kvar[0])
    assert apparent <= 4700.0 * (1 + 1e-5)
    assert res.vb_kw[0, 0] < 150.0 - 1.0
    d = res.dlmp
    assert d.congestion[case33.slack, 0] > 0  # the rating prices every node
    np.testing.assert_allclose(d.energy + d.loss + d.congestion + d.voltage, d.total, atol=1e-12)


def test_bad_inputs(case33: Feeder) -> None:
    evs = EVLoads(bus=[3, 4], power_max_kw=7.0, energy_kwh=[5.0, 50.0], arrival=0, departure=2)
    with pytest.raises(ValidationError, match="cannot be delivered") as info:
        OpfModel(case33, periods=3, evs=evs)
    assert info.value.problems[0].index == (1,)
    with pytest.raises(ValidationError, match="node index out of range"):
        OpfModel(
            case33,
            batteries=Batteries(bus=[40], charge_max_kw=1, discharge_max_kw=1, capacity_kwh=1),
        )
    with pytest.raises(ValidationError, match="formulation"):
        OpfModel(case33, formulation="dc")  # type: ignore[arg-type]
    model = OpfModel(case33, periods=2)
    with pytest.raises(ValidationError, match="p_kw"):
        model.solve(0.1, np.zeros((33, 3)))
    with pytest.raises(ValidationError, match="built without them"):
        model.solve(
            0.1, batteries=Batteries(bus=[1], charge_max_kw=1, discharge_max_kw=1, capacity_kwh=1)
        )
    meshed = copy.deepcopy(case33.net)
    meshed.line["in_service"] = True
    with pytest.raises(ValidationError, match="meshed"):
        OpfModel(feeder_from_net(meshed))


def test_infeasible_reports_status(case33: Feeder) -> None:
    res = solve_opf(case33, 0.1, ac_check=False, s_max_kva=np.full(32, 100.0))
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
        expected = 0.5 * mv_rural.load_p_kw.sum() + iron_kw * res.vm_pu[mv_rural.slack, 0] ** 2
        assert res.substation_p_kw[0] == pytest.approx(expected, rel=1e-6)


def test_highs_for_lindistflow(case33: Feeder, vb_far_end: VirtualBatteries) -> None:
    limits = np.array(case33.branch_s_max_kva, dtype=np.float64)
    limits[int(case33.parent_branch[FAR_END])] = 150.0
    results = [
        OpfModel(
            case33, formulation="lindistflow", virtual_batteries=vb_far_end, solver=solver
        ).solve(0.1, s_max_kva=limits, ac_check=False)
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
    assert np.all(d.total[:, 0] >= price - 1e-9)  # losses only make power dearer downstream


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
