"""AC power flow: the published 33-bus base case and the per-node injection override."""

from __future__ import annotations

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, load_feeder
from transactive.network.powerflow import PowerFlowRunner, run_powerflow


@pytest.fixture(scope="module")
def case33() -> Feeder:
    return load_feeder("case33bw")


def test_baran_wu_base_case(case33: Feeder) -> None:
    """Baran & Wu (1989): 202.67 kW of losses, minimum voltage 0.9131 pu at their bus 18."""
    res = run_powerflow(case33)
    assert res.converged
    assert res.losses_kw == pytest.approx(202.67, abs=0.05)
    assert res.vmin_pu == pytest.approx(0.9131, abs=5e-5)
    assert res.vmin_bus == 17  # 0-based node 17 = Baran & Wu bus 18
    assert res.vmax_pu == pytest.approx(1.0)
    assert res.vmax_bus == case33.slack
    assert res.p_slack_kw == pytest.approx(3715.0 + res.losses_kw, rel=1e-6)


def test_injection_override(case33: Feeder) -> None:
    same = run_powerflow(case33, case33.net_p_kw, case33.net_q_kvar)
    base = run_powerflow(case33)
    assert same.losses_kw == pytest.approx(base.losses_kw, rel=1e-9)
    np.testing.assert_allclose(same.vm_pu, base.vm_pu, atol=1e-9)
    light = run_powerflow(case33, 0.5 * case33.net_p_kw, 0.5 * case33.net_q_kvar)
    assert light.losses_kw < 0.3 * base.losses_kw  # losses scale about with the square
    assert light.vmin_pu > base.vmin_pu
    # p only: reactive consumption is zero
    p_only = run_powerflow(case33, case33.net_p_kw)
    assert p_only.q_slack_kvar < 0.1 * base.q_slack_kvar
    # the feeder's net is untouched
    assert len(case33.net.load) == 32


def test_injection_validation(case33: Feeder) -> None:
    with pytest.raises(ValidationError, match=r"needs shape \(33,\)"):
        run_powerflow(case33, np.zeros(5))
    bad = np.zeros(33)
    bad[4] = np.nan
    with pytest.raises(ValidationError, match="must be finite") as info:
        run_powerflow(case33, bad)
    assert info.value.problems[0].index == (4,)


def test_not_converged(case33: Feeder) -> None:
    res = run_powerflow(case33, 40 * case33.net_p_kw, 40 * case33.net_q_kvar)
    assert not res.converged
    assert np.isnan(res.losses_kw)
    assert res.vmin_bus == -1


def test_branch_results_follow_pandapower() -> None:
    feeder = load_feeder("cigre_lv")
    res = run_powerflow(feeder)
    assert res.converged
    net_lines = res.line_loading_pct
    for line, k in feeder.line_branch.items():
        pos = int(np.flatnonzero(res.line_index == line)[0])
        assert res.branch_loading_pct[k] == pytest.approx(net_lines[pos])
    assert res.max_line_loading_pct == pytest.approx(np.nanmax(net_lines))
    assert res.trafo_loading_pct.size == 3
    assert res.max_trafo_loading_pct == pytest.approx(np.nanmax(res.trafo_loading_pct))
    # power into the transformer branches adds up to the substation draw (one slack)
    slack_branches = np.flatnonzero(feeder.branch_from == feeder.slack)
    assert res.branch_p_kw[slack_branches].sum() == pytest.approx(res.p_slack_kw, rel=1e-6)


def test_runner_reuses_net(case33: Feeder) -> None:
    runner = PowerFlowRunner(case33)
    a = runner.run(case33.net_p_kw, case33.net_q_kvar)
    runner.set_slack_voltage(1.02)
    b = runner.run(case33.net_p_kw, case33.net_q_kvar)
    assert b.vm_pu[case33.slack] == pytest.approx(1.02)
    assert b.losses_kw < a.losses_kw
