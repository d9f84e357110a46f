import copy

import numpy as np
import pandapower as pp
import pytest

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.security import SecurityLimits, ViolationKind, security_check

#: Nodes at the end of the 33-bus feeder's lateral 25-32 (Baran-Wu buses 30-33).
END_NODES = np.array([29, 30, 31, 32])
CAP = 1.0


@pytest.fixture(scope="module")
def feeder() -> Feeder:
    return load_feeder("case33bw")


def rated(feeder: Feeder, node: int, kva: float, **kwargs) -> SecurityLimits:
    """Limits with every branch unrated except the one feeding ``node``, rated at the current
    of ``kva`` at nominal voltage."""
    i_max = np.full(feeder.n_branches, np.inf)
    b = feeder.parent_branch[node]
    i_max[b] = kva / (np.sqrt(3.0) * feeder.vn_kv[feeder.branch_to[b]] * 1000.0)
    return SecurityLimits(branch_i_max_ka=i_max, **kwargs)


# ---------------------------------------------------------------------- the check


def test_base_case_is_secure(feeder: Feeder):
    report = security_check(feeder, feeder.net_p_kw, feeder.net_q_kvar)
    assert report.secure and report.converged
    assert report.violations == ()
    assert report.losses_kw == pytest.approx(202.68, abs=0.01)
    assert report.vm_pu.min() == pytest.approx(0.9131, abs=1e-4)
    assert report.to_frame().empty


def test_heavy_load_lists_every_undervoltage_with_values(feeder: Feeder):
    report = security_check(feeder, 1.6 * feeder.net_p_kw, 1.6 * feeder.net_q_kvar)
    assert not report.secure
    under = [v for v in report.violations if v.kind == ViolationKind.UNDERVOLTAGE]
    low = np.flatnonzero(report.vm_pu < feeder.vmin_pu)
    assert [v.index for v in under] == low.tolist()
    assert 17 in low  # the far end of the main feeder
    for v in under:
        assert v.value == pytest.approx(report.vm_pu[v.index])
        assert v.limit == 0.9
        assert v.excess > 0
        assert v.element == "node"
    assert set(report.to_frame()["kind"]) == {"undervoltage"}


def test_overvoltage_from_dg_export(feeder: Feeder):
    p = feeder.net_p_kw.copy()
    p[17] = -2500.0
    report = security_check(feeder, p, limits=SecurityLimits(vmax_pu=1.05))
    over = [v for v in report.violations if v.kind == ViolationKind.OVERVOLTAGE]
    assert over
    assert max(over, key=lambda v: v.value).index == 17


def test_line_loading_matches_pandapower(feeder: Feeder):
    i_max_ka = 0.12
    net = copy.deepcopy(feeder.net)
    net.line["max_i_ka"] = i_max_ka
    pp.runpp(net, numba=False)
    report = security_check(
        feeder,
        feeder.net_p_kw,
        feeder.net_q_kvar,
        limits=SecurityLimits(branch_i_max_ka=i_max_ka, vmin_pu=0.8),
    )
    expected = np.full(feeder.n_branches, np.nan)
    for line, branch in feeder.line_branch.items():
        expected[branch] = net.res_line.loading_percent[line]
    np.testing.assert_allclose(report.branch_loading_pct, expected, rtol=1e-6)
    overloaded = [v.index for v in report.violations if v.kind == ViolationKind.OVERLOAD]
    assert overloaded == np.flatnonzero(expected > 100).tolist()
    assert overloaded  # the first branches carry more than 0.12 kA
    v = next(v for v in report.violations if v.kind == ViolationKind.OVERLOAD)
    assert v.name == f"line {feeder.branch_element[v.index]}" and v.element == "line"


def test_collapse_is_reported_as_divergence(feeder: Feeder):
    report = security_check(feeder, 6 * feeder.net_p_kw, 6 * feeder.net_q_kvar)
    assert not report.converged and not report.secure
    assert [v.kind for v in report.violations] == [ViolationKind.DIVERGENCE]


def test_bad_check_input_names_every_problem(feeder: Feeder):
    with pytest.raises(ValidationError) as err:
        security_check(feeder, np.ones(3), np.full(33, np.inf))
    assert {p.field for p in err.value.problems} == {"p_kw", "q_kvar"}
    with pytest.raises(ValidationError) as err:
        security_check(
            feeder,
            feeder.net_p_kw,
            limits=SecurityLimits(
                vmin_pu=1.0, vmax_pu=0.95, branch_i_max_ka=[1.0, 2.0], max_loading_pct=-1
            ),
        )
    assert {p.field for p in err.value.problems} == {
        "vmax_pu",
        "branch_i_max_ka",
        "max_loading_pct",
    }


# ---------------------------------------------------------------------- one thermal limit


def test_ratings_of_the_net_agree_with_pandapower_lines_and_transformers():
    """The check's loading is pandapower's loading_percent, lines and transformers alike."""
    for name in ("cigre_mv", "1-LV-rural1--0-sw"):
        fd = load_feeder(name)
        net = copy.deepcopy(fd.net)
        pp.runpp(net, numba=False)
        report = security_check(fd, *own_injections(fd), limits=SecurityLimits(vmin_pu=0.0))
        for table, mapping in (("line", fd.line_branch), ("trafo", fd.trafo_branch)):
            for element, branch in mapping.items():
                assert report.branch_loading_pct[branch] == pytest.approx(
                    net[f"res_{table}"].loading_percent[element], rel=1e-6, abs=1e-6
                ), (name, table, element)


def own_injections(fd: Feeder) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(fd.net_p_kw), np.asarray(fd.net_q_kvar)


def test_placeholder_ratings_are_unrated_not_zero(feeder: Feeder):
    assert not feeder.branch_rated.any()  # case33bw: 99999 kA
    report = security_check(feeder, feeder.net_p_kw, feeder.net_q_kvar)
    assert np.isnan(report.branch_loading_pct).all()
    rated_feeder = feeder.with_line_ratings(0.2)
    assert rated_feeder.branch_rated.all()
    report = security_check(rated_feeder, feeder.net_p_kw, feeder.net_q_kvar)
    assert np.nanmax(report.branch_loading_pct) == pytest.approx(52.59 * 2, rel=1e-3)
    assert [v.index for v in report.violations if v.kind == ViolationKind.OVERLOAD]


def test_real_ratings_survive_a_feeder_whose_load_is_all_devices():
    """A feeder with its own loads removed (the devices are the load) keeps its real ratings."""
    import pandapower.networks as pn  # noqa: PLC0415

    net = pn.create_cigre_network_mv(with_der=False)
    net.load["p_mw"] = 0.0
    net.load["q_mvar"] = 0.0
    fd = feeder_from_net(net, name="cigre-mv, no own load")
    assert fd.branch_rated.all()
    lines = list(fd.line_branch)
    rated_ka = (net.line.max_i_ka * net.line.df * net.line.parallel).loc[lines].to_numpy()
    np.testing.assert_allclose(fd.branch_i_max_ka[list(fd.line_branch.values())], rated_ka)
    # 9 MW of device load at the far end overloads lines the DSO's check must see
    p = np.zeros(fd.n_nodes)
    p[fd.levels[-1][0]] = 9000.0
    report = security_check(fd, p, np.zeros(fd.n_nodes), limits=SecurityLimits(vmin_pu=0.5))
    assert not report.secure
    assert any(v.kind == ViolationKind.OVERLOAD for v in report.violations)


def test_user_ratings_by_line_and_errors(feeder: Feeder):
    one = feeder.with_line_ratings({0: 0.3})
    assert one.branch_rated.sum() == 1
    assert one.branch_i_max_ka[one.line_branch[0]] == pytest.approx(0.3)
    with pytest.raises(ValidationError) as err:
        feeder.with_line_ratings({999: 0.3})
    assert "no such line" in str(err.value)
    with pytest.raises(ValidationError, match="positive finite"):
        feeder.with_line_ratings(np.full(len(feeder.net.line), -1.0))
    with pytest.raises(ValidationError, match="needs 1 value or 37"):
        feeder.with_line_ratings([0.1, 0.2])


# ---------------------------------------------------------------------- no silent wrong answers


def test_cut_off_buses_are_unsupplied_and_insecure(feeder: Feeder):
    net = copy.deepcopy(feeder.net)
    net.line.loc[20, "in_service"] = False  # Baran & Wu's branch 21-22: bus 21 loses supply
    cut = feeder_from_net(net, name="cut")
    assert cut.unsupplied_buses == (int(net.line.to_bus[20]),)
    assert cut.unsupplied_load_kw.sum() == pytest.approx(
        net.load.p_mw[net.load.bus == 21].sum() * 1e3
    )
    report = security_check(cut, cut.net_p_kw, cut.net_q_kvar)
    assert not report.secure and report.converged
    unsupplied = [v for v in report.violations if v.kind == ViolationKind.UNSUPPLIED]
    assert [v.index for v in unsupplied] == [21]
    assert unsupplied[0].value == pytest.approx(cut.unsupplied_load_kw[0])
    assert unsupplied[0].element == "bus"


def test_no_line_table_leaves_every_load_unsupplied(feeder: Feeder):
    net = copy.deepcopy(feeder.net)
    net.line = net.line.iloc[0:0]
    cut = feeder_from_net(net, name="no lines")
    assert len(cut.unsupplied_buses) == int((net.load.p_mw > 0).sum())
    assert cut.unsupplied_load_kw.sum() == pytest.approx(net.load.p_mw.sum() * 1e3)
    report = security_check(cut, cut.net_p_kw, cut.net_q_kvar)
    assert not report.secure
    assert {v.kind for v in report.violations} == {ViolationKind.UNSUPPLIED}


def test_nan_load_is_named_as_such(feeder: Feeder):
    net = copy.deepcopy(feeder.net)
    net.load.loc[3, "p_mw"] = np.nan
    with pytest.raises(ValidationError) as err:
        feeder_from_net(net, name="nan load")
    text = str(err.value)
    assert "load.p_mw: is not a number (NaN or missing)" in text
    assert "3" in text
