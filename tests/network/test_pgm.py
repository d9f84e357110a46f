"""power-grid-model batch power flow against pandapower's Newton-Raphson on the same inputs.

pandapower (``runpp`` through :class:`PowerFlowRunner`) is the reference. Measured differences on
these feeders: voltages below 1e-6 pu (case33bw and CIGRE below 3e-8 pu, SimBench 7e-7 pu, where
pandapower's T model of the transformer and power-grid-model's π model differ), loadings below
1e-4 percentage points, losses below 0.02 %. The tests allow 1e-5 pu, 0.01 pp and 0.1 %: well
inside the 1e-3 pu / 0.1 pp / 1 % asked of the runner.
"""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.network.day import FeederDay, feeder_day_load, run_day
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.pgm import BatchFlowResult, BatchPowerFlow
from transactive.network.powerflow import PowerFlowRunner, run_powerflow
from transactive.network.security import SecurityLimits, ViolationKind

VM_TOL_PU = 1e-5
LOADING_TOL_PP = 0.01
LOSS_REL_TOL = 1e-3


@cache
def named(name: str) -> Feeder:
    return load_feeder(name)


@cache
def flow_of(name: str) -> BatchPowerFlow:
    return BatchPowerFlow(named(name))


def random_day(feeder: Feeder, t_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Nominal net load times independent factors per interval and node (0.2..1.5)."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.2, 1.5, (t_count, feeder.n_nodes))
    return feeder.net_p_kw[None, :] * factor, feeder.net_q_kvar[None, :] * factor


def assert_matches_pandapower(
    feeder: Feeder, result: BatchFlowResult, p: np.ndarray, q: np.ndarray
) -> None:
    runner = PowerFlowRunner(feeder, replace_injections=True)
    for t in range(p.shape[0]):
        ref = runner.run(p[t], q[t])
        assert ref.converged and result.converged[t]
        np.testing.assert_allclose(result.vm_pu[t], ref.vm_pu, rtol=0, atol=VM_TOL_PU)
        assert np.array_equal(
            np.isnan(result.branch_loading_pct[t]), np.isnan(ref.branch_loading_pct)
        )
        rated = np.isfinite(ref.branch_loading_pct)
        np.testing.assert_allclose(
            result.branch_loading_pct[t][rated],
            ref.branch_loading_pct[rated],
            rtol=0,
            atol=LOADING_TOL_PP,
        )
        assert result.losses_kw[t] == pytest.approx(ref.losses_kw, rel=LOSS_REL_TOL)
        assert result.p_slack_kw[t] == pytest.approx(ref.p_slack_kw, rel=1e-5, abs=1e-6)
        assert result.q_slack_kvar[t] == pytest.approx(ref.q_slack_kvar, rel=1e-4, abs=1e-3)
        np.testing.assert_allclose(result.branch_p_kw[t], ref.branch_p_kw, rtol=1e-4, atol=1e-3)


def test_case33bw_base_case_reproduces_baran_wu_and_pandapower() -> None:
    feeder = named("case33bw")
    p, q = feeder.net_p_kw[None, :], feeder.net_q_kvar[None, :]
    result = flow_of("case33bw").run(p, q)
    # Baran & Wu (1989): 202.7 kW of losses, 0.9131 pu at their bus 18 (node 17)
    assert result.losses_kw[0] == pytest.approx(202.7, abs=0.05)
    assert int(np.argmin(result.vm_pu[0])) == 17
    assert result.vm_pu[0, 17] == pytest.approx(0.9131, abs=1e-4)
    ref = run_powerflow(feeder)  # the net's own loads, not the replaced ones
    np.testing.assert_allclose(result.vm_pu[0], ref.vm_pu, rtol=0, atol=VM_TOL_PU)
    assert result.losses_kw[0] == pytest.approx(ref.losses_kw, rel=LOSS_REL_TOL)


def test_source_is_ideal_like_pandapowers_external_grid() -> None:
    # the converter's default source (10 GVA) lowers case33bw's weakest bus by about 3e-4 pu
    feeder = named("case33bw")
    result = flow_of("case33bw").run(feeder.net_p_kw[None, :], feeder.net_q_kvar[None, :])
    ref = run_powerflow(feeder)
    assert np.max(np.abs(result.vm_pu[0] - ref.vm_pu)) < 1e-7
    assert result.vm_pu[0, feeder.slack] == pytest.approx(feeder.slack_vm_pu, abs=1e-8)


def test_case33bw_random_day_with_ratings_matches_pandapower() -> None:
    feeder = named("case33bw").with_line_ratings(0.3)
    p, q = random_day(feeder, 12, seed=3)
    result = BatchPowerFlow(feeder).run(p, q)
    assert result.n_intervals == 12
    assert result.vm_pu.shape == (12, feeder.n_nodes)
    assert result.branch_loading_pct.shape == (12, feeder.n_branches)
    assert np.isfinite(result.branch_loading_pct).all()
    assert_matches_pandapower(feeder, result, p, q)


@pytest.mark.parametrize("name", ["cigre_lv", "1-LV-rural1--0-sw", "1-MV-urban--0-sw"])
def test_feeders_with_transformers_match_pandapower(name: str) -> None:
    feeder = named(name)
    assert feeder.trafo_branch, "the feeder should hold a transformer"
    p, q = random_day(feeder, 4, seed=7)
    result = flow_of(name).run(p, q)
    assert_matches_pandapower(feeder, result, p, q)
    trafo = np.fromiter(feeder.trafo_branch.values(), dtype=np.int64)
    assert np.isfinite(result.branch_loading_pct[:, trafo]).all()


def test_sign_convention_generation_raises_voltage_and_exports() -> None:
    feeder = named("cigre_lv")
    n = feeder.n_nodes
    leaf = int(np.argmax([len(level) for level in feeder.levels]))
    node = int(feeder.levels[leaf][0])
    p = np.zeros((2, n))
    p[0, node], p[1, node] = 20.0, -20.0  # consumption, then injection
    result = flow_of("cigre_lv").run(p)
    assert result.vm_pu[0, node] < 1.0 * feeder.slack_vm_pu < result.vm_pu[1, node]
    assert result.p_slack_kw[0] > 20.0 and result.p_slack_kw[1] < -19.0


def test_unrated_feeder_has_nan_loading_like_pandapower() -> None:
    feeder = named("case33bw")
    assert not feeder.branch_rated.any()
    p, q = random_day(feeder, 2, seed=1)
    result = flow_of("case33bw").run(p, q)
    assert np.isnan(result.branch_loading_pct).all()
    assert np.isfinite(result.branch_i_from_ka).all()
    one = flow_of("case33bw").run_interval(p[0], q[0])
    assert np.isnan(one.line_loading_pct).all() and np.isnan(one.max_line_loading_pct)
    assert not one.any_rated


def test_run_interval_is_a_pandapower_runner_result() -> None:
    feeder = named("cigre_lv")
    p, q = random_day(feeder, 1, seed=11)
    one = flow_of("cigre_lv").run_interval(p[0], q[0])
    ref = PowerFlowRunner(feeder).run(p[0], q[0])
    assert one.converged
    np.testing.assert_array_equal(one.line_index, ref.line_index)
    np.testing.assert_array_equal(one.trafo_index, ref.trafo_index)
    np.testing.assert_allclose(one.line_loading_pct, ref.line_loading_pct, atol=LOADING_TOL_PP)
    np.testing.assert_allclose(one.trafo_loading_pct, ref.trafo_loading_pct, atol=LOADING_TOL_PP)
    assert one.max_line_loading_pct == pytest.approx(ref.max_line_loading_pct, abs=LOADING_TOL_PP)
    assert one.vmin_bus == ref.vmin_bus and one.vmax_bus == ref.vmax_bus
    assert one.vmin_pu == pytest.approx(ref.vmin_pu, abs=VM_TOL_PU)
    assert one.losses_kw == pytest.approx(ref.losses_kw, rel=LOSS_REL_TOL)
    np.testing.assert_allclose(one.branch_i_to_ka, ref.branch_i_to_ka, rtol=1e-4)


def test_parallel_lines_of_one_branch_add_up() -> None:
    net = copy.deepcopy(named("cigre_lv").net)
    line = int(net.line.index[3])
    twin = net.line.loc[[line]].copy()
    twin.index = [int(net.line.index.max()) + 1]
    net.line = pd.concat([net.line, twin])
    feeder = feeder_from_net(net, name="cigre_lv, one line doubled")
    assert len(feeder.line_branch) == len(net.line)
    assert feeder.n_branches == named("cigre_lv").n_branches
    p, q = random_day(feeder, 2, seed=5)
    assert_matches_pandapower(feeder, BatchPowerFlow(feeder).run(p, q), p, q)


def test_unsupplied_buses_are_left_out_and_the_rest_matches() -> None:
    net = copy.deepcopy(named("case33bw").net)
    net.line.loc[20, "in_service"] = False  # Baran & Wu's branch 21-22: bus 21 loses supply
    feeder = feeder_from_net(net, name="case33bw, bus 21 cut off")
    assert feeder.unsupplied_buses
    p, q = random_day(feeder, 3, seed=2)
    result = BatchPowerFlow(feeder).run(p, q)
    assert result.converged.all()
    assert_matches_pandapower(feeder, result, p, q)


def test_divergence_is_reported_per_interval_never_hidden() -> None:
    feeder = named("case33bw")
    p, q = random_day(feeder, 3, seed=4)
    p[1] *= 40.0  # far past voltage collapse
    q[1] *= 40.0
    result = flow_of("case33bw").run(p, q)
    assert result.converged.tolist() == [True, False, True]
    assert result.failure[0] == "" and result.failure[2] == ""
    assert result.failure[1]  # power-grid-model's message
    for arr in (result.vm_pu[1], result.branch_i_from_ka[1], result.branch_p_kw[1]):
        assert np.isnan(arr).all()
    assert np.isnan([result.losses_kw[1], result.p_slack_kw[1], result.q_slack_kvar[1]]).all()
    assert not PowerFlowRunner(feeder).run(p[1], q[1]).converged  # pandapower agrees
    runner = PowerFlowRunner(feeder)
    for t in (0, 2):
        np.testing.assert_allclose(result.vm_pu[t], runner.run(p[t], q[t]).vm_pu, atol=VM_TOL_PU)
    one = flow_of("case33bw").run_interval(p[1], q[1])
    assert not one.converged and np.isnan(one.vm_pu).all() and one.vmin_bus == -1


def test_bad_injections_are_refused_naming_field_and_interval() -> None:
    feeder = named("case33bw")
    flow = flow_of("case33bw")
    p, q = random_day(feeder, 4, seed=0)
    p[2, 5] = np.nan
    q[3, 0] = np.inf
    with pytest.raises(ValidationError) as err:
        flow.run(p, q)
    text = str(err.value)
    assert "p_kw: is not a number (NaN) in interval (entry 2)" in text
    assert "q_kvar: is infinite in interval (entry 3)" in text
    with pytest.raises(ValidationError, match=r"p_kw: needs shape \(T, 33\)"):
        flow.run(np.zeros((2, 32)))
    with pytest.raises(ValidationError, match="at least one interval"):
        flow.run(np.zeros((0, 33)))
    with pytest.raises(ValidationError, match="must have the shape of p_kw"):
        flow.run(np.zeros((2, 33)), np.zeros((3, 33)))
    with pytest.raises(ValidationError, match=r"p_kw: must be finite \(entry 4\)"):
        flow.run_interval(np.where(np.arange(33) == 4, np.nan, 0.0))
    with pytest.raises(ValidationError, match=r"q_kvar: needs shape \(33,\)"):
        flow.run_interval(np.zeros(33), np.zeros(5))


def test_elements_power_grid_model_cannot_model_are_refused() -> None:
    net = copy.deepcopy(named("cigre_lv").net)
    pp.create_ward(net, bus=int(net.bus.index[5]), ps_mw=0.01, qs_mvar=0.0, pz_mw=0.0, qz_mvar=0.0)
    feeder = feeder_from_net(net, name="cigre_lv with a ward")
    with pytest.raises(ValidationError, match="ward: power-grid-model cannot model"):
        BatchPowerFlow(feeder)
    with pytest.raises(ValidationError, match="max_iterations") as err:
        BatchPowerFlow(named("cigre_lv"), max_iterations=0, error_tolerance_pu=-1.0)
    assert "error_tolerance_pu" in str(err.value)


@settings(max_examples=15, deadline=None)
@given(order=st.permutations(list(range(5))))
def test_intervals_are_independent_of_their_order(order: list[int]) -> None:
    feeder = named("cigre_mv")
    p, q = random_day(feeder, 5, seed=9)
    flow = flow_of("cigre_mv")
    base = flow.run(p, q)
    shuffled = flow.run(p[order], q[order])
    np.testing.assert_allclose(shuffled.vm_pu, base.vm_pu[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(shuffled.losses_kw, base.losses_kw[order], rtol=1e-10)


def test_results_are_read_only() -> None:
    feeder = named("cigre_mv")
    result = flow_of("cigre_mv").run(*random_day(feeder, 2, seed=1))
    with pytest.raises(ValueError, match="read-only"):
        result.vm_pu[0, 0] = 1.0


# ---------------------------------------------------------------------- run_day on either backend


def assert_same_day(a: FeederDay, b: FeederDay) -> None:
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_allclose(a.vm_pu, b.vm_pu, rtol=0, atol=VM_TOL_PU)
    np.testing.assert_allclose(
        a.branch_loading_pct, b.branch_loading_pct, rtol=0, atol=LOADING_TOL_PP
    )
    np.testing.assert_allclose(a.losses_kw, b.losses_kw, rtol=LOSS_REL_TOL)
    np.testing.assert_allclose(a.p_slack_kw, b.p_slack_kw, rtol=1e-5)
    np.testing.assert_array_equal(a.vmin_node, b.vmin_node)
    np.testing.assert_array_equal(a.n_violations, b.n_violations)
    np.testing.assert_array_equal(a.secure, b.secure)
    for found_a, found_b in zip(a.violations, b.violations, strict=True):
        assert [(v.kind, v.element, v.index, v.name, v.limit) for v in found_a] == [
            (v.kind, v.element, v.index, v.name, v.limit) for v in found_b
        ]
        np.testing.assert_allclose(
            [v.value for v in found_a],
            [v.value for v in found_b],
            atol=max(VM_TOL_PU, LOADING_TOL_PP),
        )
    np.testing.assert_array_equal(a.branch_rated, b.branch_rated)
    assert a.energy_losses_kwh == pytest.approx(b.energy_losses_kwh, rel=LOSS_REL_TOL)


def test_run_day_pgm_gives_pandapowers_day_and_violations() -> None:
    # stressed so that some intervals break voltage and loading limits
    feeder = named("case33bw").with_line_ratings(0.25)
    p, q = random_day(feeder, 6, seed=8)
    p[2:4] *= 1.6
    q[2:4] *= 1.6
    limits = SecurityLimits(vmin_pu=0.93)
    ref = run_day(feeder, p, q, limits=limits, interval_s=300)
    got = run_day(feeder, p, q, limits=limits, interval_s=300, backend="pgm")
    assert ref.n_insecure >= 2 and len(ref.intervals_with("overload")) >= 1
    assert_same_day(got, ref)


def test_run_day_pgm_on_simbench_with_own_load_and_a_prepared_flow() -> None:
    feeder = named("1-LV-rural1--0-sw")
    load = feeder_day_load(feeder)
    rows = [0, 40, 80]
    flow = flow_of("1-LV-rural1--0-sw")
    got = run_day(feeder, load.p_kw[rows], load.q_kvar[rows], backend="pgm", flow=flow)
    assert_same_day(got, run_day(feeder, load.p_kw[rows], load.q_kvar[rows]))


def test_run_day_pgm_reports_divergence_and_unsupplied_like_pandapower() -> None:
    net = copy.deepcopy(named("case33bw").net)
    net.line.loc[20, "in_service"] = False
    feeder = feeder_from_net(net, name="case33bw, bus 21 cut off")
    p, q = random_day(feeder, 3, seed=6)
    p[0] *= 40.0
    q[0] *= 40.0
    ref = run_day(feeder, p, q)
    got = run_day(feeder, p, q, backend="pgm")
    assert got.converged.tolist() == [False, True, True]
    assert got.violations[0][-1].kind == ViolationKind.DIVERGENCE
    assert all(found[0].kind == ViolationKind.UNSUPPLIED for found in got.violations)
    assert_same_day(got, ref)
    assert got.not_converged.tolist() == [0]


def test_run_day_refuses_a_bad_backend_or_flow() -> None:
    feeder = named("cigre_mv")
    p = np.zeros((2, feeder.n_nodes))
    with pytest.raises(ValidationError, match="backend: must be one of pandapower, pgm"):
        run_day(feeder, p, backend="numba")
    with pytest.raises(ValidationError, match="was built for feeder 'case33bw'"):
        run_day(feeder, p, backend="pgm", flow=flow_of("case33bw"))
    with pytest.raises(ValidationError, match="needs backend='pgm'"):
        run_day(feeder, p, flow=flow_of("cigre_mv"))
    p[1, 0] = np.nan
    with pytest.raises(ValidationError, match=r"p_kw: is not a number \(NaN\) in interval"):
        run_day(feeder, p, backend="pgm")
