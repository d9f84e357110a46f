"""Feeder layout: the net's geodata where it has them, a tidy tree drawing otherwise."""

from __future__ import annotations

import json
import sys
from functools import cache

import numpy as np
import pandapower as pp
import pytest

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, feeder_from_net, load_feeder
from transactive.network.layout import (
    feeder_coordinates,
    has_geodata,
    is_geographic,
    tree_layout,
)

FEEDERS = ("case33bw", "1-LV-rural1--0-sw", "1-MV-urban--0-sw")


@cache
def named(name: str) -> Feeder:
    return load_feeder(name)


@pytest.fixture(scope="module", params=FEEDERS)
def feeder(request: pytest.FixtureRequest) -> Feeder:
    return named(request.param)


def geo_of(feeder: Feeder) -> np.ndarray:
    return np.array(
        [json.loads(feeder.net.bus.geo.at[int(b)])["coordinates"] for b in feeder.node_bus]
    )


def chain_net(n: int, *, with_geo: bool = False) -> pp.pandapowerNet:
    """A chain of ``n`` buses with a side branch at bus 1 (vectorized pandapower calls)."""
    net = pp.create_empty_network()
    geodata = [(float(i), 0.0) for i in range(n)] if with_geo else None
    buses = pp.create_buses(net, n, vn_kv=0.4, geodata=geodata)
    pp.create_ext_grid(net, int(buses[0]))
    frm = np.r_[buses[:-2], buses[1]]
    to = np.r_[buses[1:-1], buses[-1]]
    pp.create_lines_from_parameters(
        net,
        frm,
        to,
        length_km=0.01,
        r_ohm_per_km=0.2,
        x_ohm_per_km=0.1,
        c_nf_per_km=0.0,
        max_i_ka=0.2,
    )
    return net


def test_coordinates_finite_and_distinct(feeder: Feeder) -> None:
    for source in ("auto", "tree"):
        xy = feeder_coordinates(feeder, source)
        assert xy.shape == (feeder.n_nodes, 2)
        assert np.isfinite(xy).all()
        assert np.unique(xy, axis=0).shape[0] == feeder.n_nodes


def test_auto_uses_the_nets_geodata(feeder: Feeder) -> None:
    assert has_geodata(feeder)
    xy = feeder_coordinates(feeder)
    geo = geo_of(feeder)
    # nodes that share a position with another are moved a little; every other one is exact
    _, inverse, counts = np.unique(geo, axis=0, return_inverse=True, return_counts=True)
    alone = counts[inverse.reshape(-1)] == 1
    np.testing.assert_array_equal(xy[alone], geo[alone])
    if not alone.all():
        moved = np.hypot(*(xy[~alone] - geo[~alone]).T)
        frm, to = feeder.branch_from, feeder.branch_to
        lengths = np.hypot(*(geo[to] - geo[frm]).T)
        assert moved.max() <= 0.25 * lengths[lengths > 0].min() + 1e-12


def test_simbench_is_geographic_and_case33bw_is_not() -> None:
    assert is_geographic(named("1-LV-rural1--0-sw"))
    assert not is_geographic(named("case33bw"))


def test_tree_layout_puts_children_right_of_parents(feeder: Feeder) -> None:
    xy = tree_layout(feeder)
    child = np.flatnonzero(feeder.parent >= 0)
    parent = feeder.parent[child]
    np.testing.assert_array_equal(xy[child, 0], xy[parent, 0] + 1.0)
    assert xy[feeder.slack, 0] == 0.0


def test_tree_layout_centres_parents_and_spreads_leaves(feeder: Feeder) -> None:
    xy = tree_layout(feeder)
    parent = np.asarray(feeder.parent)
    n = feeder.n_nodes
    children = np.bincount(parent[parent >= 0], minlength=n)
    for p in np.flatnonzero(children):
        ys = xy[parent == p, 1]
        assert xy[p, 1] == pytest.approx(0.5 * (ys.min() + ys.max()))
    leaves = np.flatnonzero(children == 0)
    np.testing.assert_array_equal(np.sort(xy[leaves, 1]), np.arange(leaves.size, dtype=float))


def test_case33bw_tree_has_its_four_ends_as_leaves() -> None:
    fd = named("case33bw")
    xy = tree_layout(fd)
    # Baran & Wu's feeder ends at buses 18, 22, 25 and 33 (nodes 17, 21, 24, 32)
    assert sorted(xy[[17, 21, 24, 32], 1]) == [0.0, 1.0, 2.0, 3.0]
    assert xy[17, 0] == 17.0  # the main feeder is 17 branches deep


def test_deep_feeder_lays_out_without_recursion() -> None:
    depth = sys.getrecursionlimit() + 200
    fd = feeder_from_net(chain_net(depth), name="chain")
    assert not has_geodata(fd)
    xy = feeder_coordinates(fd)  # no geodata: the tree layout
    assert xy[:, 0].max() == depth - 2
    assert np.unique(xy, axis=0).shape[0] == fd.n_nodes


def test_partial_geodata_falls_back_to_the_tree() -> None:
    net = chain_net(6, with_geo=True)
    net.bus.loc[3, "geo"] = None
    fd = feeder_from_net(net, name="partial")
    np.testing.assert_array_equal(feeder_coordinates(fd), tree_layout(fd))
    with pytest.raises(ValidationError, match=r"no position.*entry 3"):
        feeder_coordinates(fd, "geodata")


def test_full_geodata_is_used() -> None:
    fd = feeder_from_net(chain_net(6, with_geo=True), name="geo")
    np.testing.assert_array_equal(feeder_coordinates(fd, "geodata")[:, 0], np.arange(6.0))


def test_bad_source_rejected() -> None:
    with pytest.raises(ValidationError, match="source"):
        feeder_coordinates(named("case33bw"), "map")  # type: ignore[arg-type]
