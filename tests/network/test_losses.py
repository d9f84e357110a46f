import copy

import numpy as np
import pandapower as pp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.losses import (
    LOSS_METHODS,
    AcFlows,
    LossAllocation,
    allocate_losses,
    branch_current_losses,
    marginal_losses,
    pro_rata_losses,
    solve_flows,
    split_to_meters,
    tracing_losses,
)
from transactive.network.powerflow import PowerFlowRunner

#: Nodes of the 33-bus feeder given DG that exports (negative net load), in kW.
DG_KW = {17: -600.0, 24: -800.0, 32: -500.0}


@pytest.fixture(scope="module")
def feeder() -> Feeder:
    return load_feeder("case33bw")


@pytest.fixture(scope="module")
def runner(feeder: Feeder) -> PowerFlowRunner:
    return PowerFlowRunner(feeder)


def with_dg(feeder: Feeder) -> tuple[np.ndarray, np.ndarray]:
    p = feeder.net_p_kw.copy()
    q = feeder.net_q_kvar.copy()
    for node, kw in DG_KW.items():
        p[node], q[node] = kw, 0.0
    return p, q


@pytest.fixture(scope="module")
def flows(feeder: Feeder, runner: PowerFlowRunner) -> AcFlows:
    p, q = with_dg(feeder)
    return solve_flows(feeder, p, q, runner=runner)


def all_methods(flows: AcFlows) -> list[LossAllocation]:
    return [
        pro_rata_losses(flows),
        pro_rata_losses(flows, basis="split"),
        marginal_losses(flows),
        tracing_losses(flows),
        tracing_losses(flows, load_share=0.5),
        tracing_losses(flows, load_share=0.0),
        branch_current_losses(flows),
    ]


def test_the_dg_case_has_bidirectional_flows(flows: AcFlows):
    reverse = flows.branch_p_from_kw < 0
    assert reverse.any()
    assert (~reverse).any()
    assert flows.total_loss_kw == pytest.approx(flows.powerflow.losses_kw, rel=1e-12)
    assert flows.total_loss_kw == pytest.approx(flows.p_slack_kw - flows.p_kw.sum(), abs=1e-4)


def test_every_method_allocates_exactly_the_losses(flows: AcFlows):
    for allocation in all_methods(flows):
        assert allocation.allocated_kw.shape == (33,)
        assert allocation.allocated_kw.sum() == pytest.approx(flows.total_loss_kw, rel=1e-9), (
            allocation.method,
            allocation.variant,
        )
        assert allocation.share.sum() == pytest.approx(1.0)


def test_base_case_losses_are_those_of_baran_and_wu(feeder: Feeder, runner: PowerFlowRunner):
    allocation = allocate_losses(feeder, method="branch_current")
    assert allocation.total_loss_kw == pytest.approx(202.68, abs=0.01)
    assert allocation.allocated_kw.sum() == pytest.approx(202.68, abs=0.01)


def test_marginal_loss_coefficients_match_finite_differences(
    feeder: Feeder, runner: PowerFlowRunner, flows: AcFlows
):
    for node in (5, 17, 29):
        for which in ("p", "q"):
            p, q = flows.p_kw.copy(), flows.q_kvar.copy()
            (p if which == "p" else q)[node] += 0.5
            up = solve_flows(feeder, p, q, runner=runner).total_loss_kw
            (p if which == "p" else q)[node] -= 1.0
            down = solve_flows(feeder, p, q, runner=runner).total_loss_kw
            expected = up - down  # central difference over 1 kW / kvar
            coefficient = (flows.mlc_p if which == "p" else flows.mlc_q)[node]
            assert coefficient == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert flows.mlc_p[feeder.slack] == 0.0


def test_marginal_normalisation_is_near_one_half(flows: AcFlows):
    allocation = marginal_losses(flows)
    assert 0.35 < allocation.scale < 0.65


def test_loss_relieving_generator_is_credited_by_linear_methods_only(flows: AcFlows):
    # node 32 (Baran-Wu bus 33) exports 500 kW at the end of the lateral 25-32, which also
    # feeds 1.2 MW of load: its current opposes the lateral's current and cuts its losses.
    node = 32
    assert branch_current_losses(flows).allocated_kw[node] < 0
    assert marginal_losses(flows).allocated_kw[node] < 0
    # tracing and pro rata never give negative allocations
    for allocation in (tracing_losses(flows, load_share=0.5), pro_rata_losses(flows)):
        assert (allocation.allocated_kw >= -1e-12).all()


def test_tracing_charges_consumers_or_generators_by_the_share(feeder: Feeder, flows: AcFlows):
    exporters = flows.p_kw < 0
    loads_pay = tracing_losses(flows, load_share=1.0).allocated_kw
    assert np.all(loads_pay[exporters] == 0.0)
    gens_pay = tracing_losses(flows, load_share=0.0).allocated_kw
    consumers = (flows.p_kw > 0) & (np.arange(33) != feeder.slack)
    assert np.all(gens_pay[consumers] == 0.0)
    # the grid supply at the substation is a generator and pays its part
    assert gens_pay[feeder.slack] > 0
    half = tracing_losses(flows, load_share=0.5).allocated_kw
    np.testing.assert_allclose(half, 0.5 * loads_pay + 0.5 * gens_pay, atol=1e-12)


def test_pro_rata_split_is_half_consumption_half_generation(flows: AcFlows):
    allocation = pro_rata_losses(flows, basis="split")
    gen = flows.p_kw < 0
    assert allocation.allocated_kw[gen].sum() == pytest.approx(0.5 * flows.total_loss_kw)
    consumption = np.maximum(flows.p_kw, 0.0)
    np.testing.assert_allclose(
        allocation.allocated_kw[~gen],
        0.5 * flows.total_loss_kw * consumption[~gen] / consumption.sum(),
    )
    absolute = pro_rata_losses(flows).allocated_kw
    np.testing.assert_allclose(
        absolute, flows.total_loss_kw * np.abs(flows.p_kw) / np.abs(flows.p_kw).sum()
    )


def three_node_feeder() -> Feeder:
    """Slack 0 - node 1 - node 2 at 0.4 kV."""
    net = pp.create_empty_network(sn_mva=0.1)
    buses = [pp.create_bus(net, vn_kv=0.4) for _ in range(3)]
    pp.create_ext_grid(net, buses[0], vm_pu=1.0)
    for a, b in ((0, 1), (1, 2)):
        pp.create_line_from_parameters(
            net,
            buses[a],
            buses[b],
            length_km=0.2,
            r_ohm_per_km=0.3,
            x_ohm_per_km=0.08,
            c_nf_per_km=0.0,
            max_i_ka=0.3,
        )
    return feeder_from_net(net, name="three nodes")


def test_one_load_pays_all_the_losses_under_every_method():
    feeder = three_node_feeder()
    p = np.array([0.0, 0.0, 60.0])
    q = np.array([0.0, 0.0, 10.0])
    for method in LOSS_METHODS:
        allocation = allocate_losses(feeder, p, q, method=method)
        assert allocation.total_loss_kw > 0
        np.testing.assert_allclose(
            allocation.allocated_kw, [0.0, 0.0, allocation.total_loss_kw], atol=1e-9
        )


def test_tracing_by_hand_on_two_loads():
    feeder = three_node_feeder()
    flows = solve_flows(feeder, [0.0, 40.0, 30.0], [0.0, 0.0, 0.0])
    loss_01, loss_12 = flows.branch_loss_kw
    # node 1's throughput: its own 40 kW and what it sends on to node 2
    send_12 = flows.branch_p_from_kw[1]
    share_1 = 40.0 / (40.0 + send_12)
    expected = [0.0, loss_01 * share_1, loss_01 * (1 - share_1) + loss_12]
    np.testing.assert_allclose(tracing_losses(flows).allocated_kw, expected, rtol=1e-9)


def test_branch_current_decomposition_by_hand_on_two_loads():
    feeder = three_node_feeder()
    flows = solve_flows(feeder, [0.0, 40.0, 30.0], [0.0, 15.0, 5.0])
    v = flows.vm_pu * np.exp(1j * flows.va_rad)
    current = np.conj((flows.p_kw + 1j * flows.q_kvar) / v)  # any common scale cancels
    i_01 = current[1] + current[2]
    loss_01, loss_12 = flows.branch_loss_kw
    expected = [
        0.0,
        loss_01 * np.real(current[1] * np.conj(i_01)) / abs(i_01) ** 2,
        loss_01 * np.real(current[2] * np.conj(i_01)) / abs(i_01) ** 2 + loss_12,
    ]
    np.testing.assert_allclose(branch_current_losses(flows).allocated_kw, expected, rtol=1e-9)
    # on a series-only feeder each branch's loss is r |I|²: the decomposition's currents agree
    r_ohm = 0.3 * 0.2
    s_base = feeder.s_base_kva
    i_base_ka = s_base / (np.sqrt(3) * 0.4) / 1000.0
    i_01_ka = abs(i_01 / s_base) * i_base_ka  # current was in kW/pu-V: per unit on s_base
    assert 3 * r_ohm * (i_01_ka * 1000) ** 2 / 1000 == pytest.approx(loss_01, rel=1e-6)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(1, 32), st.floats(-900.0, 400.0)), min_size=1, max_size=6))
def test_allocations_sum_to_losses_for_any_injections(feeder, runner, changes):
    p, q = feeder.net_p_kw.copy(), feeder.net_q_kvar.copy()
    for node, kw in changes:
        p[node] = kw
    flows = solve_flows(feeder, p, q, runner=runner)
    for allocation in all_methods(flows):
        if allocation.method == "marginal" and abs(allocation.scale) > 50:
            continue  # near-cancelling Σ mlc·p: normalisation ill-conditioned but still exact
        assert allocation.allocated_kw.sum() == pytest.approx(flows.total_loss_kw, rel=1e-7)


def test_branch_fed_from_both_ends_is_traced(feeder: Feeder, runner: PowerFlowRunner):
    # DG at node 28 meets the forward flow on branch 26-27: both ends feed it
    p, q = feeder.net_p_kw.copy(), feeder.net_q_kvar.copy()
    p[28] = -626.0
    flows = solve_flows(feeder, p, q, runner=runner)
    assert ((flows.branch_p_from_kw > 0) & (flows.branch_p_to_kw < 0)).any()
    for share in (0.0, 0.5, 1.0):
        allocation = tracing_losses(flows, load_share=share)
        assert allocation.allocated_kw.sum() == pytest.approx(flows.total_loss_kw, rel=1e-9)
        assert (allocation.allocated_kw >= 0).all()


def test_loss_energy_over_an_interval(flows: AcFlows):
    allocation = branch_current_losses(flows)
    np.testing.assert_allclose(allocation.energy_kwh(900), allocation.allocated_kw / 4)


def test_meters_share_their_node_allocation(flows: AcFlows):
    allocation = branch_current_losses(flows)
    meter_node = np.array([5, 5, 5, 17, 3])
    meter_p = np.array([80.0, -30.0, 10.0, -600.0, 120.0])
    shares = split_to_meters(allocation, meter_node, meter_p)
    np.testing.assert_allclose(shares[:3], allocation.allocated_kw[5] * meter_p[:3] / 60.0)
    assert shares[3] == pytest.approx(allocation.allocated_kw[17])
    assert shares[4] == pytest.approx(allocation.allocated_kw[3])
    # a node whose meters net to zero shares by |p|
    zero = split_to_meters(allocation, np.array([7, 7]), np.array([50.0, -50.0]))
    np.testing.assert_allclose(zero, allocation.allocated_kw[7] * 0.5)


def test_bad_input_names_every_problem(feeder: Feeder, flows: AcFlows):
    with pytest.raises(ValidationError) as err:
        solve_flows(feeder, np.ones(5), np.full(33, np.nan))
    fields = {p.field for p in err.value.problems}
    assert fields == {"p_kw", "q_kvar"}
    with pytest.raises(ValidationError, match="method"):
        allocate_losses(feeder, method="shapley")
    with pytest.raises(ValidationError, match="load_share"):
        tracing_losses(flows, load_share=1.5)
    with pytest.raises(ValidationError, match="basis"):
        pro_rata_losses(flows, basis="energy")  # type: ignore[arg-type]
    allocation = branch_current_losses(flows)
    with pytest.raises(ValidationError) as err:
        split_to_meters(allocation, np.array([0, 40, -1]), np.array([1.0, np.inf, 2.0]))
    assert {p.field for p in err.value.problems} == {"meter_node", "meter_p_kw"}
    assert err.value.problems[0].index == (1, 2)


def test_meshed_feeder_is_refused():
    net = load_feeder("case33bw").net
    meshed = copy.deepcopy(net)
    meshed.line.loc[32, "in_service"] = True  # close a tie line
    with pytest.raises(ValidationError, match="meshed"):
        solve_flows(feeder_from_net(meshed, name="meshed"))


def test_transformer_feeder_allocations_sum_to_losses():
    # CIGRE LV: three MV/LV transformers (with iron losses) feeding residential, industrial and
    # commercial sub-networks; a quarter of the loaded nodes export 1.5 times their load
    feeder = load_feeder("cigre_lv")
    assert set(feeder.branch_kind) == {"line", "trafo"}
    p, q = feeder.net_p_kw.copy(), feeder.net_q_kvar.copy()
    loaded = np.flatnonzero(p > 0)
    p[loaded[::4]] *= -1.5
    flows = solve_flows(feeder, p, q)
    assert (flows.branch_p_from_kw < 0).any()
    for allocation in all_methods(flows):
        assert allocation.allocated_kw.sum() == pytest.approx(flows.total_loss_kw, rel=1e-9)
