"""Where to draw a feeder's nodes: the net's own geodata, or a tidy tree from its radial structure.

:func:`feeder_coordinates` gives one ``(x, y)`` per feeder node for drawing a map:

* **Geodata.** When every node's representative pandapower bus (its first bus: fused nodes take
  the position of ``Feeder.node_bus``) has a position, the positions are the net's own:
  pandapower 3 stores a GeoJSON point per bus in the ``net.bus.geo`` column
  (``{"type": "Point", "coordinates": [x, y]}``); older nets carry a ``net.bus_geodata`` table
  with ``x`` and ``y`` columns. SimBench grids ship WGS84 longitude/latitude (Meinecke et al.,
  "SimBench", Energies 13(12), 3290, 2020); pandapower's built-in test feeders ship schematic
  coordinates. Nodes that share one position (a substation transformer's two sides are drawn at
  the same point) are spread on a small circle around it (a quarter of the shortest non-zero
  branch length in radius), the node nearest the slack kept at the point, so every node stays
  visible and the positions are distinct.
* **Tree layout.** Otherwise a layered ("tidy") tree drawing of the feeder's breadth-first tree
  (``Feeder.parent``) in the manner of Reingold & Tilford: depth from the substation along ``x``
  (one unit per level), the leaves spread evenly along ``y`` (one unit apart, in depth-first
  order so that no two subtrees overlap) and every parent centred over its children (half-way
  between its first and last child). The implementation loops over depth levels with numpy
  operations inside, never over nodes by recursion, so feeders thousands of levels deep lay out
  without hitting Python's recursion limit.

Branches that are not in the tree (a meshed feeder's loops) are drawn between their ends by the
map; the layout only places nodes.

References
----------
E. M. Reingold and J. S. Tilford, "Tidier drawings of trees", IEEE Trans. Software Engineering
SE-7(2), 223-228, 1981. GeoJSON: IETF RFC 7946, §3.1.2 (Point).

"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.network.feeders import Feeder

__all__ = ["feeder_coordinates", "has_geodata", "is_geographic", "tree_layout"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LayoutSource = Literal["auto", "geodata", "tree"]


def feeder_coordinates(feeder: Feeder, source: LayoutSource = "auto") -> FloatArray:
    """Drawing position ``(x, y)`` of every feeder node.

    Parameters
    ----------
    feeder : Feeder
        The feeder.
    source : {"auto", "geodata", "tree"}
        ``"auto"`` (default): the net's bus geodata when every node has a position, else the
        tree layout. ``"geodata"`` insists on the geodata, ``"tree"`` always lays out the tree.

    Returns
    -------
    (N, 2) float
        Finite, pairwise distinct positions, in the geodata's own units (longitude and latitude
        in degrees for SimBench grids) or in tree-layout units (one per depth level along ``x``,
        one per leaf along ``y``).

    Raises
    ------
    ValidationError
        ``source`` unknown, or ``"geodata"`` asked for and some node has no position (naming
        the nodes).

    """
    problems = Problems(subject=f"layout of feeder {feeder.name!r}")
    if source not in ("auto", "geodata", "tree"):
        problems.add("source", f"must be 'auto', 'geodata' or 'tree', got {source!r}")
        problems.raise_if_any()
    if source == "tree":
        return tree_layout(feeder)
    xy = _geodata(feeder)
    if source == "geodata":
        problems.check(
            ~np.isfinite(xy).all(axis=1),
            "geodata",
            "node has no position in net.bus.geo or net.bus_geodata",
            list(feeder.node_name),
        )
        problems.raise_if_any()
    elif not np.isfinite(xy).all():
        return tree_layout(feeder)
    return _spread_coincident(feeder, xy)


def has_geodata(feeder: Feeder) -> bool:
    """True when every node's representative bus has a finite position in the net's geodata."""
    return bool(np.isfinite(_geodata(feeder)).all())


def is_geographic(feeder: Feeder) -> bool:
    """True when the feeder's geodata are WGS84 longitude/latitude (SimBench grids).

    A map of such coordinates should stretch ``y`` by ``1 / cos(latitude)`` so that distances
    east-west and north-south look alike (an equirectangular projection about the feeder).
    """
    return has_geodata(feeder) and feeder.geodata_lonlat


def tree_layout(feeder: Feeder) -> FloatArray:
    """Layered tree drawing of the feeder's breadth-first tree (see the module docstring).

    Returns
    -------
    (N, 2) float
        ``x`` = depth from the slack, ``y`` = position across, leaves one unit apart.

    """
    parent = np.asarray(feeder.parent, dtype=np.int64)
    n = parent.size
    levels = feeder.levels
    child_count = np.bincount(parent[parent >= 0], minlength=n)
    # leaves in every subtree, bottom-up one level at a time
    leaves = (child_count == 0).astype(np.int64)
    for nodes in reversed(levels[1:]):
        np.add.at(leaves, parent[nodes], leaves[nodes])
    # first leaf slot of every subtree, top-down: siblings (in node order) take consecutive runs
    start = np.zeros(n, dtype=np.int64)
    for nodes in levels[1:]:
        ordered = nodes[np.lexsort((nodes, parent[nodes]))]
        par = parent[ordered]
        run = np.cumsum(leaves[ordered])
        # leaves of the earlier siblings under the same parent
        group_start = np.r_[True, par[1:] != par[:-1]]
        before_group = np.where(group_start, run - leaves[ordered], 0)
        before_group = np.maximum.accumulate(before_group)
        start[ordered] = start[par] + (run - leaves[ordered] - before_group)
    y = start.astype(np.float64)
    # parents half-way between their first and last child, bottom-up
    for nodes in reversed(levels[1:]):
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.minimum.at(lo, parent[nodes], y[nodes])
        np.maximum.at(hi, parent[nodes], y[nodes])
        has = np.isfinite(lo)
        y[has] = 0.5 * (lo[has] + hi[has])
    depth = np.zeros(n, dtype=np.float64)
    for d, nodes in enumerate(levels):
        depth[nodes] = d
    # the first leaf on top, as one reads a one-line diagram
    return np.column_stack([depth, y.max(initial=0.0) - y])


# ---------------------------------------------------------------------------------- helpers


def _geodata(feeder: Feeder) -> FloatArray:
    """Position of every node's representative bus (NaN where the net has none)."""
    return np.asarray(feeder.node_geodata, dtype=np.float64)


def _spread_coincident(feeder: Feeder, xy: FloatArray) -> FloatArray:
    """Move nodes that share a position onto a small circle around it (first node stays)."""
    out = np.array(xy, dtype=np.float64)
    _unique, inverse, counts = np.unique(out, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if (counts == 1).all():
        return out
    frm, to = np.asarray(feeder.branch_from), np.asarray(feeder.branch_to)
    lengths = np.hypot(*(out[to] - out[frm]).T)
    positive = lengths[lengths > 0]
    if positive.size:
        radius = 0.25 * float(positive.min())
    else:
        span = float(np.ptp(out, axis=0).max()) if out.shape[0] > 1 else 0.0
        radius = 0.01 * span if span > 0 else 1.0
    depth = np.zeros(out.shape[0])
    for d, nodes in enumerate(feeder.levels):
        depth[nodes] = d
    for group in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == group)
        members = members[np.lexsort((members, depth[members]))]
        others = members[1:]
        angle = 2.0 * np.pi * np.arange(others.size) / others.size + np.pi / 4.0
        out[others, 0] += radius * np.cos(angle)
        out[others, 1] += radius * np.sin(angle)
    return out
