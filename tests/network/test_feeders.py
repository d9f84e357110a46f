"""Feeder loading, radial structure, bad files, device placement."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from transactive.errors import ValidationError
from transactive.network.feeders import (
    Feeder,
    bus_of_devices,
    feeder_from_net,
    load_feeder,
    simbench_node_profiles,
    spread_over_load_buses,
)


@pytest.fixture(scope="module")
def case33() -> Feeder:
    return load_feeder("case33bw")


@pytest.fixture(scope="module")
def mv_rural() -> Feeder:
    return load_feeder("1-MV-rural--0-sw")


def test_case33bw_structure(case33: Feeder) -> None:
    assert case33.n_nodes == 33
    assert case33.n_branches == 32
    assert case33.is_radial
    assert case33.slack == 0
    np.testing.assert_array_equal(case33.node_bus, np.arange(33))
    # Baran & Wu: lateral 19-22 starts at bus 2 (1-based), i.e. node 18's parent is node 1
    assert case33.parent[18] == 1
    assert case33.parent[25] == 5
    assert case33.load_p_kw.sum() == pytest.approx(3715.0)
    assert case33.load_q_kvar.sum() == pytest.approx(2300.0)
    # branch 1-2: 0.0922 + j0.0470 ohm on 12.66 kV and s_base
    z_base = 12.66**2 / (case33.s_base_kva / 1000.0)
    k = case33.parent_branch[1]
    assert case33.branch_r_pu[k] * z_base == pytest.approx(0.0922)
    assert case33.branch_x_pu[k] * z_base == pytest.approx(0.0470)
    # every branch runs away from the slack
    assert np.all(case33.parent[case33.branch_to] == case33.branch_from)
    assert case33.vmin_pu[5] == pytest.approx(0.9)


def test_arrays_are_read_only(case33: Feeder) -> None:
    with pytest.raises(ValueError, match="read-only"):
        case33.branch_r_pu[0] = 1.0


def test_simbench_switches_and_parallel_transformers(mv_rural: Feeder) -> None:
    net = mv_rural.net
    # two bus-bus couplers fuse the 110 kV and the 20 kV busbars: 97 buses, 95 nodes
    assert len(net.bus) == 97
    assert mv_rural.n_nodes == 95
    # six open load-break switches make the rings radial
    assert (~net.switch.closed).sum() == 6
    assert mv_rural.is_radial
    assert mv_rural.n_branches == mv_rural.n_nodes - 1
    # the two 25 MVA transformers in parallel are one branch rated 50 MVA
    trafo_branches = {mv_rural.trafo_branch[i] for i in net.trafo.index}
    assert len(trafo_branches) == 1
    (k,) = trafo_branches
    assert mv_rural.branch_kind[k] == "trafo"
    assert mv_rural.branch_s_max_kva[k] == pytest.approx(50_000.0)
    assert mv_rural.vn_kv[mv_rural.slack] == pytest.approx(110.0)
    assert mv_rural.slack_vm_pu == pytest.approx(1.025)
    # open lines are not branches
    open_lines = set(net.switch.element[(net.switch.et == "l") & ~net.switch.closed])
    assert open_lines.isdisjoint(mv_rural.line_branch)


def test_meshed_feeder_rejected_for_distflow(case33: Feeder) -> None:
    net = copy.deepcopy(case33.net)
    net.line.loc[net.line.index[~net.line.in_service], "in_service"] = True  # close the 5 ties
    feeder = feeder_from_net(net, name="meshed33")
    assert not feeder.is_radial
    assert any("meshed" in p and "5 independent loop" in p for p in feeder.radial_problems)
    with pytest.raises(ValidationError, match="meshed"):
        feeder.require_radial()


def test_disconnected_load_rejected(case33: Feeder) -> None:
    net = copy.deepcopy(case33.net)
    net.line.loc[17, "in_service"] = False  # cut the lateral starting at bus 18 (0-based)
    feeder = feeder_from_net(net, name="cut")
    assert any("disconnected" in p and "18" in p for p in feeder.radial_problems)
    with pytest.raises(ValidationError, match="disconnected"):
        feeder.require_radial()


def _write(net: pp.pandapowerNet, path: Path) -> Path:
    pp.to_json(net, str(path))
    return path


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file, built-in feeder or SimBench code"):
        load_feeder(tmp_path / "nope.json")
    with pytest.raises(ValidationError, match="not a SimBench code"):
        load_feeder("9-XX-nothing--0-sw")


def test_invalid_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValidationError, match="not valid JSON"):
        load_feeder(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}), encoding="utf-8")
    with pytest.raises(ValidationError, match="not a pandapower network"):
        load_feeder(other)


def test_no_ext_grid(case33: Feeder, tmp_path: Path) -> None:
    net = copy.deepcopy(case33.net)
    net.ext_grid = net.ext_grid.iloc[0:0]
    with pytest.raises(ValidationError, match="no in-service external grid"):
        load_feeder(_write(net, tmp_path / "noext.json"))


def test_bad_elements_all_named(case33: Feeder, tmp_path: Path) -> None:
    net = copy.deepcopy(case33.net)
    net.line.loc[3, "to_bus"] = 999
    net.line.loc[5, "r_ohm_per_km"] = -0.1
    net.line.loc[7, "x_ohm_per_km"] = -0.2
    net.load.loc[2, "bus"] = 555
    with pytest.raises(ValidationError) as info:
        load_feeder(_write(net, tmp_path / "broken.json"))
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("line.to_bus", (3,)) in found
    assert ("line.r_ohm_per_km", (5,)) in found
    assert ("line.x_ohm_per_km", (7,)) in found
    assert ("load.bus", (2,)) in found
    assert "references a bus that does not exist" in str(info.value)


def test_json_round_trip(case33: Feeder, tmp_path: Path) -> None:
    feeder = load_feeder(_write(case33.net, tmp_path / "c33.json"))
    np.testing.assert_allclose(feeder.branch_r_pu, case33.branch_r_pu)
    np.testing.assert_allclose(feeder.load_p_kw, case33.load_p_kw)


def test_spread_over_load_buses(case33: Feeder) -> None:
    bus = spread_over_load_buses(1000, case33)
    assert bus.shape == (1000,)
    counts = np.bincount(bus, minlength=33)
    share = case33.load_p_kw / case33.load_p_kw.sum()
    assert np.all(np.abs(counts - 1000 * share) < 1.0)  # largest remainder: within one device
    assert counts[0] == 0  # the substation has no load
    rng_a = spread_over_load_buses(500, case33, np.random.default_rng(3))
    rng_b = spread_over_load_buses(500, case33, np.random.default_rng(3))
    np.testing.assert_array_equal(rng_a, rng_b)
    assert not np.any(rng_a == 0)


def test_bus_of_devices(case33: Feeder) -> None:
    np.testing.assert_array_equal(bus_of_devices([2, 0, 1]), [0, 0, 2])
    with pytest.raises(ValidationError, match="non-negative"):
        bus_of_devices([1, -1])
    with pytest.raises(ValidationError, match="one per node"):
        bus_of_devices([1, 2], case33)
    with pytest.raises(ValidationError, match="whole numbers"):
        bus_of_devices([1.5, 2.0])


def test_simbench_profiles(mv_rural: Feeder, case33: Feeder) -> None:
    import simbench  # noqa: PLC0415

    p, q = simbench_node_profiles(mv_rural, start=4 * 24 * 10, periods=8)
    assert p.shape == q.shape == (8, 95)  # time first
    values = simbench.get_absolute_values(mv_rural.net, profiles_instead_of_study_cases=True)
    window = slice(4 * 24 * 10, 4 * 24 * 10 + 8)
    expected = (
        values[("load", "p_mw")].iloc[window].sum(axis=1).to_numpy()
        - values[("sgen", "p_mw")].iloc[window].sum(axis=1).to_numpy()
    ) * 1000.0
    np.testing.assert_allclose(p.sum(axis=1), expected, rtol=1e-9)
    with pytest.raises(ValidationError, match="no SimBench profiles"):
        simbench_node_profiles(case33)


def test_shunts_from_line_charging_and_magnetizing(mv_rural: Feeder, case33: Feeder) -> None:
    net = mv_rural.net
    line_b = (
        2 * np.pi * net.f_hz * net.line.c_nf_per_km * 1e-9 * net.line.length_km * 20.0**2
    )  # MVA at 20 kV
    in_tree = np.asarray([i in mv_rural.line_branch for i in net.line.index])
    # open-switched lines are left out of the arrays entirely
    b_lines = line_b[in_tree].sum() * 1000.0 / mv_rural.s_base_kva
    b_trafo = (
        -np.sqrt(
            (net.trafo.i0_percent / 100 * net.trafo.sn_mva) ** 2 - (net.trafo.pfe_kw / 1000) ** 2
        ).sum()
        * 1000.0
        / mv_rural.s_base_kva
    )
    assert mv_rural.shunt_b_pu.sum() == pytest.approx(b_lines + b_trafo, rel=1e-9)
    assert mv_rural.shunt_g_pu.sum() == pytest.approx(
        net.trafo.pfe_kw.sum() / mv_rural.s_base_kva, rel=1e-9
    )
    np.testing.assert_array_equal(case33.shunt_b_pu, 0.0)
