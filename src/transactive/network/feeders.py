"""Distribution feeders: load a pandapower net and derive its radial (DistFlow) structure.

A :class:`Feeder` wraps a pandapower net (built-in test feeders, SimBench grids shipped with the
``simbench`` package, or any pandapower JSON file) together with the arrays that the branch flow
model of Baran & Wu needs: the nodes (pandapower buses fused by closed bus-bus switches), the
branches (lines and two-winding transformers, oriented away from the substation), their series
impedance in per unit, tap ratios, thermal ratings, node shunts, the nominal loads and the
voltage limits. :func:`simbench_node_profiles` turns SimBench's shipped yearly profiles into net
consumption per node.

Conventions
-----------
* **Nodes.** Buses joined by a closed bus-bus switch of zero impedance are one electrical node.
  Nodes are numbered in the order of their representative pandapower bus (the smallest
  pandapower bus index of the group), so for ``case33bw`` node ``i`` is pandapower bus ``i`` and
  Baran & Wu's (1-based) bus ``i + 1``.
* **Branches.** Every in-service line and two-winding transformer whose ends are in service and
  that no open switch disconnects (an open switch at one end takes the whole element out; a
  closed bus-bus switch with ``z_ohm > 0`` is a resistive branch). Parallel elements between
  the same two nodes are merged into one branch (impedances in parallel, ratings added). A
  branch runs from ``branch_from`` (the end nearer the slack) to ``branch_to``.
* **Per unit.** Power base ``s_base_kva`` (stated on the feeder), voltage base the nominal voltage
  ``vn_kv`` of each node, impedance base ``vn_kv² / s_base``.
* **Lines** use the series impedance ``r_ohm_per_km · length_km / parallel``; their charging
  (``c_nf_per_km``, ``g_us_per_km``) goes half to each end node as a shunt (π model). Thermal
  rating ``max_i_ka · df · parallel`` (pandapower's rated current of a line).
* **Transformers** use the short-circuit impedance ``vk_percent`` / ``vkr_percent`` on the
  rating ``sn_mva`` referred to the low-voltage side (as pandapower does), the off-nominal ratio
  from rated voltages and tap position (for tap changers of type ``Ratio`` or ``Symmetrical``,
  as pandapower 3 applies them) as an ideal transformer at the substation-side end, and
  the rated current of each side ``sn_mva · parallel · df / (√3 · vn_kv)`` (pandapower's
  ``trafo_loading="current"``). The magnetizing admittance (``pfe_kw``, ``i0_percent``) is a
  shunt at the high-voltage node (pandapower's T model puts it mid-winding, a small difference).
  The phase shift is neglected (a radial feeder's flows do not depend on it).
* **Thermal limit**, one definition in the whole package (power flow, DSO check, OPF): a
  branch's loading is its current over its rated current, the larger of its two ends, as
  pandapower's ``loading_percent``. A feeder whose ratings are placeholders (pandapower's
  ``case33bw``: 99999 kA) has *unrated* branches (``branch_i_max_ka`` is ``inf``, loadings NaN);
  :meth:`Feeder.with_line_ratings` or ``load_feeder(..., line_max_i_ka=)`` gives ratings.
* **Shunts** (``shunt_g_pu``, ``shunt_b_pu``) also include pandapower ``shunt`` elements.
* **Loads** are pandapower ``load`` rows (``p_mw · scaling``), generation is ``sgen`` and ``gen``
  rows; ``net_p_kw = load_p_kw - gen_p_kw`` is the nominal net consumption per node
  (positive = consumption, as everywhere in the project).

References
----------
M. E. Baran and F. F. Wu, "Network reconfiguration in distribution systems for loss reduction
and load balancing", IEEE Trans. Power Delivery 4(2), 1401-1407, 1989 (the 33-bus feeder and the
DistFlow equations). L. Thurner et al., "pandapower", IEEE Trans. Power Systems 33(6), 2018
(element models). S. Meinecke et al., "SimBench", Energies 13(12), 3290, 2020 (benchmark grids).

"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import pickle
import re
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive._cache import cached_build
from transactive.errors import Problems

__all__ = [
    "BUILTIN_FEEDERS",
    "Feeder",
    "bus_of_devices",
    "feeder_from_net",
    "load_feeder",
    "simbench_node_profiles",
    "spread_over_load_buses",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Voltage limits used where a pandapower bus has no ``min_vm_pu`` / ``max_vm_pu`` (EN 50160 ±10 %).
DEFAULT_VMIN_PU = 0.9
DEFAULT_VMAX_PU = 1.1


def _case33bw() -> Any:
    import pandapower.networks as pn  # noqa: PLC0415

    return pn.case33bw()


def _cigre_lv() -> Any:
    import pandapower.networks as pn  # noqa: PLC0415

    return pn.create_cigre_network_lv()


def _cigre_mv() -> Any:
    import pandapower.networks as pn  # noqa: PLC0415

    return pn.create_cigre_network_mv(with_der=False)


def _cigre_mv_pv_wind() -> Any:
    import pandapower.networks as pn  # noqa: PLC0415

    return pn.create_cigre_network_mv(with_der="pv_wind")


def _four_loads() -> Any:
    import pandapower.networks as pn  # noqa: PLC0415

    return pn.four_loads_with_branches_out()


#: Built-in feeder names (besides SimBench codes such as ``1-LV-rural1--0-sw``).
BUILTIN_FEEDERS: dict[str, Callable[[], Any]] = {
    "case33bw": _case33bw,
    "cigre_lv": _cigre_lv,
    "cigre_mv": _cigre_mv,
    "cigre_mv_pv_wind": _cigre_mv_pv_wind,
    "four_loads": _four_loads,
}

_SIMBENCH_CODE = re.compile(r"^\d-[A-Za-z0-9]+-[A-Za-z0-9]*-[A-Za-z0-9]*-\d-(sw|no_sw)$")


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


#: Where an unpickled :class:`Feeder` keeps its net's own pickle until ``net`` is first read.
_NET_PICKLE = "_net_pickle"


@dataclass(frozen=True, eq=False)
class Feeder:
    """A pandapower net plus its DistFlow structure (see the module docstring for conventions).

    Attributes
    ----------
    name : str
        Built-in name, SimBench code or file path the feeder was loaded from.
    net : pandapowerNet
        The pandapower net. Treat it as read-only: power flows run on copies.
    s_base_kva : float
        Per-unit power base of ``branch_r_pu``, ``branch_x_pu``.
    node_bus : (N,) int
        Representative pandapower bus index of every node.
    node_name : tuple of str
        Display name of every node (pandapower bus ``name``, or its index when unnamed).
    bus_node : dict of int to int
        Node of every in-service, connected pandapower bus.
    vn_kv : (N,) float
        Nominal voltage of every node, the per-unit voltage base.
    slack : int
        Node of the (first) in-service external grid, the substation.
    slack_vm_pu : float
        Voltage set point of that external grid.
    parent, parent_branch : (N,) int
        Parent node and the branch to it in a breadth-first tree from the slack (-1 at the
        slack). For a radial feeder this tree is the feeder.
    branch_from, branch_to : (B,) int
        Ends of every branch, ``branch_from`` nearer the slack.
    branch_r_pu, branch_x_pu : (B,) float
        Series resistance and reactance in per unit on ``s_base_kva`` and the ``branch_to``
        node's nominal voltage.
    branch_ratio : (B,) float
        Off-nominal voltage ratio τ of an ideal transformer at the ``branch_from`` end
        (1 for lines): the voltage after it is ``v_from / τ``.
    branch_i_max_ka : (B,) float
        Rated current at the ``branch_to`` end in kA, pandapower's: lines
        ``max_i_ka · df · parallel``; transformers ``sn_mva · parallel · df / (√3 · vn_kv)`` of
        that side's rated voltage. ``inf`` when the branch is unrated (no rating, or a placeholder
        that no conductor has: see :data:`PLACEHOLDER_RATING_KA`).
    branch_i_max_from_ka : (B,) float
        Rated current at the ``branch_from`` end (equal to ``branch_i_max_ka`` for lines).
    branch_s_max_kva : (B,) float
        ``branch_i_max_ka`` as apparent power at the ``branch_to`` node's nominal voltage,
        ``√3 · vn_kv · i_max``: in per unit of ``s_base_kva`` it is the rated current in per unit,
        the limit the OPF puts on the branch flow model's current (``inf`` when unrated).
    branch_kind : (B,) str
        ``"line"``, ``"trafo"`` or ``"switch"`` (a closed bus-bus switch with impedance).
    branch_element : (B,) int
        pandapower index of the (first) element of the branch in its table.
    line_branch, trafo_branch : dict of int to int
        Branch of every in-service, connected pandapower line / transformer.
    load_p_kw, load_q_kvar : (N,) float
        Nominal load per node (pandapower ``load``, ``p_mw · scaling``).
    gen_p_kw, gen_q_kvar : (N,) float
        Nominal generation per node (``sgen`` and ``gen``, ``p_mw · scaling``).
    vmin_pu, vmax_pu : (N,) float
        Voltage limits per node (pandapower ``min_vm_pu`` / ``max_vm_pu``, default 0.9 / 1.1).
    shunt_g_pu, shunt_b_pu : (N,) float
        Shunt conductance and susceptance per node in per unit on ``s_base_kva``: half of
        every line's charging (π model) at each end, transformer magnetizing (``pfe_kw``,
        ``i0_percent``) at the high-voltage end, and pandapower ``shunt`` elements. A node
        consumes ``g v²`` and produces ``b v²`` (``b > 0`` capacitive).
    isolated_buses : tuple of int
        In-service pandapower buses not connected to the slack that carry no load or generation
        (left out of the nodes).
    radial_problems : tuple of str
        Why the feeder cannot be used by DistFlow (meshed, disconnected with load, several
        external grids, unsupported elements); empty when it can.
    unsupplied_buses : tuple of int
        In-service pandapower buses with load or generation that no path connects to the slack
        (a line out of service, an open switch, no line table): their load is not supplied.
    unsupplied_load_kw, unsupplied_gen_kw : (U,) float
        Nominal load and generation at each of those buses.
    node_geodata : (N, 2) float
        Position ``(x, y)`` of every node's representative bus in the net's geodata (pandapower
        3's GeoJSON point in ``net.bus.geo``, else the older ``net.bus_geodata`` table), NaN
        where it has none; read once here, so a map needs no net
        (:mod:`transactive.network.layout`).
    geodata_lonlat : bool
        Whether those positions are WGS84 longitude and latitude: the bus table has the columns
        only SimBench's carry (Meinecke et al., "SimBench", Energies 13(12), 3290, 2020).

    """

    name: str
    net: Any
    s_base_kva: float
    node_bus: IntArray
    node_name: tuple[str, ...]
    bus_node: dict[int, int]
    vn_kv: FloatArray
    slack: int
    slack_vm_pu: float
    parent: IntArray
    parent_branch: IntArray
    branch_from: IntArray
    branch_to: IntArray
    branch_r_pu: FloatArray
    branch_x_pu: FloatArray
    branch_ratio: FloatArray
    branch_s_max_kva: FloatArray
    branch_i_max_ka: FloatArray
    branch_i_max_from_ka: FloatArray
    branch_kind: npt.NDArray[np.str_]
    branch_element: IntArray
    line_branch: dict[int, int]
    trafo_branch: dict[int, int]
    load_p_kw: FloatArray
    load_q_kvar: FloatArray
    gen_p_kw: FloatArray
    gen_q_kvar: FloatArray
    vmin_pu: FloatArray
    vmax_pu: FloatArray
    shunt_g_pu: FloatArray
    shunt_b_pu: FloatArray
    isolated_buses: tuple[int, ...]
    radial_problems: tuple[str, ...]
    node_geodata: FloatArray
    geodata_lonlat: bool
    unsupplied_buses: tuple[int, ...] = ()
    unsupplied_load_kw: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))
    unsupplied_gen_kw: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))

    # Pickling keeps the net as a pickle of its own, read back on first use of ``net``: a
    # feeder read from the user's cache gives its arrays without importing pandapower (about
    # 2 s: its package imports matplotlib, networkx, scipy.stats and its SQL back ends), which
    # a simulation on power-grid-model never needs. Only the fields are kept (cached
    # properties are derived again), and the arrays come back read-only, as built.

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "net" and "net" not in self.__dict__:
                state[_NET_PICKLE] = self.__dict__[_NET_PICKLE]  # never read back: as read
            elif f.name == "net":
                state[_NET_PICKLE] = pickle.dumps(self.net, protocol=pickle.HIGHEST_PROTOCOL)
            else:
                state[f.name] = self.__dict__[f.name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for value in state.values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        # only reached for an attribute not set: the net of an unpickled feeder, on first use
        if name == "net" and _NET_PICKLE in self.__dict__:
            net = pickle.loads(self.__dict__[_NET_PICKLE])
            object.__setattr__(self, "net", net)
            return net
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def content_key(self) -> str:
        """A digest of everything the feeder holds (its net included), for caches keyed by it.

        Two feeders with equal keys hold the same net and arrays. Reads no net that is still
        pickled (a feeder from the cache), so pandapower is not imported for it.
        """
        return hashlib.sha256(
            pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)
        ).hexdigest()

    def __repr__(self) -> str:
        shape = "radial" if self.is_radial else "not radial"
        return (
            f"Feeder({self.name!r}, {self.n_nodes} nodes, {self.n_branches} branches, {shape}, "
            f"s_base {self.s_base_kva:g} kVA)"
        )

    @property
    def n_nodes(self) -> int:
        """Number of nodes N."""
        return int(self.node_bus.size)

    @property
    def n_branches(self) -> int:
        """Number of branches B."""
        return int(self.branch_from.size)

    @property
    def is_radial(self) -> bool:
        """True when DistFlow applies: one slack, a connected tree, supported elements only."""
        return not self.radial_problems

    @property
    def branch_rated(self) -> npt.NDArray[np.bool_]:
        """(B,) bool: the branch has a rating (``branch_i_max_ka`` is finite)."""
        return np.isfinite(np.asarray(self.branch_i_max_ka))

    @property
    def net_p_kw(self) -> FloatArray:
        """Nominal net consumption per node, ``load_p_kw - gen_p_kw``."""
        return np.asarray(self.load_p_kw - self.gen_p_kw, dtype=np.float64)

    @property
    def net_q_kvar(self) -> FloatArray:
        """Nominal net reactive consumption per node, ``load_q_kvar - gen_q_kvar``."""
        return np.asarray(self.load_q_kvar - self.gen_q_kvar, dtype=np.float64)

    @cached_property
    def path_matrix(self) -> FloatArray:
        """``(n_nodes, n_branches)``: 1 where the node is fed through the branch, else 0.

        Row m marks the branches on node m's path to the slack (so column b marks the nodes
        downstream of branch b): the incidence behind linearised DistFlow's sensitivities of
        branch flows and voltages to nodal injections (Baran & Wu 1989). Read-only.
        """
        parent = np.asarray(self.parent)
        pbranch = np.asarray(self.parent_branch)
        below = np.zeros((self.n_nodes, self.n_branches))
        for nodes in self.levels[1:]:
            below[nodes] = below[parent[nodes]]
            below[nodes, pbranch[nodes]] = 1.0
        return _ro(below)

    @cached_property
    def levels(self) -> tuple[IntArray, ...]:
        """Nodes grouped by depth from the slack: level 0 is the slack alone, then its children...

        The order in which radial sweeps visit the tree (backward from the leaves, forward from
        the slack), one vectorized step per level. Nodes the slack does not reach are left out.
        """
        parent = np.asarray(self.parent, dtype=np.int64)
        depth = np.full(parent.size, -1, dtype=np.int64)
        depth[self.slack] = 0
        levels = [np.asarray([self.slack], dtype=np.int64)]
        pending = np.flatnonzero(depth < 0)
        while pending.size:
            reached = pending[depth[parent[pending]] == len(levels) - 1]
            if reached.size == 0:  # what remains is cut off from the slack
                break
            depth[reached] = len(levels)
            levels.append(_ro(reached))
            pending = pending[depth[pending] < 0]
        return tuple(levels)

    def with_line_ratings(self, max_i_ka: float | npt.ArrayLike | Mapping[int, float]) -> Feeder:
        """The same feeder with the lines rated at ``max_i_ka`` (pandapower's ``max_i_ka``).

        The ratings are written into a copy of the net (so pandapower's own ``loading_percent``
        agrees) and the feeder is derived again; ``df`` and ``parallel`` still multiply them.

        Parameters
        ----------
        max_i_ka : float, (L,) float or mapping of int to float
            One rating for every line, one per row of ``net.line`` (in its order), or ratings by
            pandapower line index (the other lines keep theirs).

        Raises
        ------
        ValidationError
            A rating that is not a positive finite number, the wrong count, or unknown lines.

        """
        net = copy.deepcopy(self.net)
        line = _table(net, "line")
        problems = Problems(subject=f"line ratings of feeder {self.name!r}")
        if len(line) == 0:
            problems.add("max_i_ka", "the feeder has no lines to rate")
            problems.raise_if_any()
        if isinstance(max_i_ka, Mapping):
            keys = list(max_i_ka)
            unknown = [k for k in keys if k not in line.index]
            if unknown:
                problems.add("max_i_ka", "no such line", unknown)
            values = np.asarray([max_i_ka[k] for k in keys], dtype=np.float64)
            problems.check(~(np.isfinite(values) & (values > 0)), "max_i_ka",
                           "must be a positive finite number of kA", keys)  # fmt: skip
            problems.raise_if_any()
            net.line.loc[keys, "max_i_ka"] = values
        else:
            values = np.asarray(max_i_ka, dtype=np.float64)
            if values.ndim == 0:
                values = np.full(len(line), float(values))
            if values.shape != (len(line),):
                problems.add(
                    "max_i_ka", f"needs 1 value or {len(line)} (one per line), got {values.shape}"
                )
                problems.raise_if_any()
            problems.check(~(np.isfinite(values) & (values > 0)), "max_i_ka",
                           "must be a positive finite number of kA", list(line.index))  # fmt: skip
            problems.raise_if_any()
            net.line["max_i_ka"] = values
        return feeder_from_net(net, name=self.name)

    def require_radial(self) -> None:
        """Raise :class:`ValidationError` naming every reason DistFlow cannot model the feeder."""
        if self.radial_problems:
            problems = Problems(subject=f"feeder {self.name!r} for DistFlow")
            for reason in self.radial_problems:
                problems.add("topology", reason)
            problems.raise_if_any()


# --------------------------------------------------------------------------------------------
# loading


def load_feeder(
    name_or_path: str | Path,
    *,
    line_max_i_ka: float | npt.ArrayLike | Mapping[int, float] | None = None,
) -> Feeder:
    """Load a feeder by built-in name, SimBench code or pandapower JSON file path.

    Parameters
    ----------
    name_or_path : str or Path
        One of :data:`BUILTIN_FEEDERS` (``case33bw``, ``cigre_lv``, ``cigre_mv``,
        ``cigre_mv_pv_wind``, ``four_loads``), a SimBench code shipped with the ``simbench``
        package (e.g. ``1-LV-rural1--0-sw``, ``1-MV-rural--0-sw``, ``1-MV-urban--0-sw``), or the
        path of a pandapower JSON file.
    line_max_i_ka : float, (L,) float or mapping of int to float, optional
        Line ratings replacing the net's (see :meth:`Feeder.with_line_ratings`), e.g. for
        ``case33bw``, whose lines carry the placeholder 99999 kA and so load as unrated.

    Returns
    -------
    Feeder
        The net and its derived structure. A meshed or disconnected feeder loads (power flow runs
        on it); :meth:`Feeder.require_radial` rejects it for DistFlow.

    Raises
    ------
    ValidationError
        Unknown name, missing or unreadable file, or a net with errors (no external grid,
        elements referencing missing buses, negative or zero impedances, bad ratings), naming
        every offending element.

    """
    feeder = _load_feeder(name_or_path)
    return feeder if line_max_i_ka is None else feeder.with_line_ratings(line_max_i_ka)


def _load_feeder(name_or_path: str | Path) -> Feeder:
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in BUILTIN_FEEDERS:
        build = BUILTIN_FEEDERS[text]
        return _fresh_feeder(
            f"{text}-{_build_key(build)}", lambda: feeder_from_net(_load_builtin(text), name=text)
        )
    if isinstance(name_or_path, str) and _SIMBENCH_CODE.match(text):
        return _fresh_feeder(
            f"simbench-{text}-{_build_key(_simbench_net)}",
            lambda: feeder_from_net(_load_simbench(text), name=text),
        )
    path = Path(text)
    problems = Problems(subject=f"feeder {text!r}")
    if not path.exists():
        known = ", ".join(BUILTIN_FEEDERS)
        problems.add(
            "feeder",
            f"no such file, built-in feeder or SimBench code (built-in: {known}; SimBench codes "
            "look like 1-MV-rural--0-sw)",
        )
        problems.raise_if_any()
    if path.is_dir():
        problems.add("feeder", "is a directory, not a pandapower JSON file")
        problems.raise_if_any()
    return feeder_from_net(_load_json(path), name=text)


def _load_builtin(name: str) -> Any:
    """A fresh copy of a built-in net; each is built (parsed from pandapower's JSON) only once.

    pandapower's ``from_json`` takes about a second for ``case33bw`` (0.8-1.9 s measured: it
    builds its empty tables three times and converts their dtypes), a deep copy 15 ms: a process
    that loads the feeder more than once (a simulation, then its report) parses it once. The
    copy keeps every caller's net its own, as a fresh build does.
    """
    return copy.deepcopy(_built_builtin(name, BUILTIN_FEEDERS[name]))


@functools.lru_cache(maxsize=8)
def _built_builtin(name: str, build: Callable[[], Any]) -> Any:
    """The net ``build()`` makes, kept per name and builder (never handed out: see above).

    Across processes it is kept in the user's cache (:func:`transactive._cache.cached_build`:
    2.5 s of importing ``pandapower.networks`` and parsing become a 13 ms unpickling), keyed
    by the builder's code and the versions of what builds the net.
    """
    return cached_build("feeders", f"{name}-{_build_key(build)}", build)


def _fresh_feeder(key: str, derive: Callable[[], Feeder]) -> Feeder:
    """A new :class:`Feeder` (its own net) from the pickle kept under ``key``, made once.

    The pickle is kept per process (the last :data:`_KEPT_FEEDERS`) and in the user's cache;
    each call unpickles it afresh, so no two callers share a net or an array, and the net
    itself is read only when used.
    """
    data = _FEEDER_PICKLES.get(key)
    if data is None:
        data = cached_build(
            "feeders",
            f"feeder-{key}-{_module_digest()}",
            lambda: pickle.dumps(derive(), protocol=pickle.HIGHEST_PROTOCOL),
        )
        while len(_FEEDER_PICKLES) >= _KEPT_FEEDERS:
            _FEEDER_PICKLES.pop(next(iter(_FEEDER_PICKLES)))
        _FEEDER_PICKLES[key] = data
    return pickle.loads(data)  # type: ignore[no-any-return]


#: How many feeders' pickles a process keeps (each a few hundred kB to a few MB).
_KEPT_FEEDERS = 8
_FEEDER_PICKLES: dict[str, bytes] = {}


@functools.cache
def _module_digest() -> str:
    """A digest of this module's source: a feeder derived by other code is derived again."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _build_key(build: Callable[..., Any]) -> str:
    """What a built net depends on: the builder's code and the packages' and Python's versions."""
    code = getattr(build, "__code__", None)
    digest = hashlib.sha256(
        repr((getattr(build, "__qualname__", repr(build)), code and code.co_code,
              code and code.co_consts, code and code.co_names)).encode()
    ).hexdigest()[:16]  # fmt: skip
    versions = "-".join(
        f"{package}{importlib.metadata.version(package)}"
        for package in ("pandapower", "pandas", "numpy", "simbench")
    )
    return f"{digest}-{versions}-py{sys.version_info[0]}.{sys.version_info[1]}"


def _load_simbench(code: str) -> Any:
    """A fresh copy of a SimBench grid; the grid is parsed from simbench's CSV files only once."""
    return copy.deepcopy(_parsed_simbench(code))


@functools.lru_cache(maxsize=8)
def _parsed_simbench(code: str) -> Any:
    """The SimBench grid of ``code``, kept in the user's cache as the built-in nets are."""
    return cached_build(
        "feeders", f"simbench-{code}-{_build_key(_simbench_net)}", lambda: _simbench_net(code)
    )


def _simbench_net(code: str) -> Any:
    import simbench  # noqa: PLC0415

    try:
        return simbench.get_simbench_net(code)
    except Exception as exc:  # simbench raises bare ValueError/KeyError on unknown codes
        problems = Problems(subject=f"feeder {code!r}")
        problems.add("feeder", f"not a SimBench code shipped with simbench ({exc})")
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc


def _load_json(path: Path) -> Any:
    import pandapower as pp  # noqa: PLC0415

    problems = Problems(subject=f"feeder {str(path)!r}")
    try:
        raw = path.read_text(encoding="utf-8")
        json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add("file", f"not valid JSON ({exc})")
        problems.raise_if_any()
    try:
        net = pp.from_json_string(raw)
    except Exception as exc:  # pandapower raises many kinds on malformed nets
        problems.add("file", f"not a pandapower network ({type(exc).__name__}: {exc})")
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc
    if not hasattr(net, "bus") or not isinstance(getattr(net, "bus", None), pd.DataFrame):
        problems.add("file", "not a pandapower network (no bus table)")
        problems.raise_if_any()
    return net


# --------------------------------------------------------------------------------------------
# validation of the net's tables


def _col(df: pd.DataFrame, name: str, default: float) -> FloatArray:
    if name not in df.columns:
        return np.full(len(df), default, dtype=np.float64)
    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isnan(values), default, values)


def _in_service(df: pd.DataFrame) -> npt.NDArray[np.bool_]:
    if "in_service" not in df.columns:
        return np.ones(len(df), dtype=bool)
    return df["in_service"].fillna(value=False).to_numpy(dtype=bool)


def _table(net: Any, name: str) -> pd.DataFrame:
    table = getattr(net, name, None) if name in net else None
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame()


def _validate_net(net: Any, problems: Problems) -> None:
    bus = _table(net, "bus")
    if len(bus) == 0:
        problems.add("bus", "the net has no buses")
        return
    known = set(bus.index.tolist())
    vn = _col(bus, "vn_kv", np.nan)
    problems.check(~(vn > 0), "bus.vn_kv", "nominal voltage must be positive", list(bus.index))
    ext = _table(net, "ext_grid")
    if len(ext) == 0 or not _in_service(ext).any():
        problems.add("ext_grid", "the net has no in-service external grid (slack bus)")
    for table, columns in (
        ("ext_grid", ("bus",)),
        ("load", ("bus",)),
        ("sgen", ("bus",)),
        ("gen", ("bus",)),
        ("line", ("from_bus", "to_bus")),
        ("trafo", ("hv_bus", "lv_bus")),
    ):
        df = _table(net, table)
        for column in columns:
            if len(df) and column in df.columns:
                missing = ~df[column].isin(known).to_numpy()
                problems.check(
                    missing,
                    f"{table}.{column}",
                    "references a bus that does not exist",
                    list(df.index),
                )
    for table in ("load", "sgen", "gen"):
        df = _table(net, table)
        if len(df) == 0:
            continue
        labels = list(df.index)
        ok = _in_service(df)
        for column in ("p_mw", "q_mvar", "scaling"):
            if column not in df.columns:
                continue
            raw_values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
            problems.check(
                ok & np.isnan(raw_values),
                f"{table}.{column}",
                "is not a number (NaN or missing) on an in-service element",
                labels,
            )
            problems.check(ok & np.isinf(raw_values), f"{table}.{column}", "is infinite", labels)
    line = _table(net, "line")
    if len(line):
        labels = list(line.index)
        r = _col(line, "r_ohm_per_km", np.nan)
        x = _col(line, "x_ohm_per_km", np.nan)
        length = _col(line, "length_km", np.nan)
        problems.check(~(r >= 0), "line.r_ohm_per_km", "must be non-negative", labels)
        problems.check(~(x >= 0), "line.x_ohm_per_km", "must be non-negative", labels)
        problems.check(~(length > 0), "line.length_km", "must be positive", labels)
        problems.check((r == 0) & (x == 0), "line", "zero impedance (use a bus-bus switch)", labels)
        i_max = _col(line, "max_i_ka", np.inf)
        problems.check(~(i_max > 0), "line.max_i_ka", "must be positive", labels)
        par = _col(line, "parallel", 1.0)
        problems.check(~(par >= 1), "line.parallel", "must be at least 1", labels)
    trafo = _table(net, "trafo")
    if len(trafo):
        labels = list(trafo.index)
        sn = _col(trafo, "sn_mva", np.nan)
        vk = _col(trafo, "vk_percent", np.nan)
        vkr = _col(trafo, "vkr_percent", np.nan)
        problems.check(~(sn > 0), "trafo.sn_mva", "rating must be positive", labels)
        problems.check(~(vk > 0), "trafo.vk_percent", "must be positive", labels)
        problems.check(
            ~((vkr >= 0) & (vkr <= vk)), "trafo.vkr_percent", "must be in [0, vk_percent]", labels
        )
        for column in ("vn_hv_kv", "vn_lv_kv"):
            problems.check(
                ~(_col(trafo, column, np.nan) > 0), f"trafo.{column}", "must be positive", labels
            )
    switch = _table(net, "switch")
    if len(switch):
        labels = list(switch.index)
        problems.check(
            ~switch["bus"].isin(known).to_numpy(),
            "switch.bus",
            "references a bus that does not exist",
            labels,
        )
        et = switch["et"].astype(str).to_numpy()
        element = switch["element"].to_numpy()
        for kind, frame in (("b", bus), ("l", line), ("t", trafo)):
            mask = et == kind
            if mask.any():
                bad = mask & ~np.isin(element, np.asarray(frame.index))
                problems.check(
                    bad, "switch.element", f"references a missing {_table_name(kind)}", labels
                )


def _table_name(kind: str) -> str:
    """Name of the pandapower element a switch of element type ``kind`` refers to."""
    return {"b": "bus", "l": "line", "t": "trafo", "t3": "trafo3w"}.get(kind, kind)


# --------------------------------------------------------------------------------------------
# structure


class _UnionFind:
    def __init__(self, items: list[int]) -> None:
        self.parent = {i: i for i in items}

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


def feeder_from_net(net: Any, *, name: str = "net") -> Feeder:
    """Derive a :class:`Feeder` from a pandapower net (validated first; see :func:`load_feeder`)."""
    problems = Problems(subject=f"feeder {name!r}")
    _validate_net(net, problems)
    problems.raise_if_any()

    bus = net.bus
    bus_ok = _in_service(bus)
    live_buses = [int(b) for b in bus.index[bus_ok]]
    live = set(live_buses)
    uf = _UnionFind(live_buses)

    switch = _table(net, "switch")
    has_sw = len(switch) > 0
    sw_closed: npt.NDArray[np.bool_] = (
        switch["closed"].fillna(value=False).to_numpy(dtype=bool) if has_sw else np.zeros(0, bool)
    )
    sw_et: npt.NDArray[np.str_] = (
        switch["et"].astype(str).to_numpy(dtype=np.str_) if has_sw else np.zeros(0, np.str_)
    )
    sw_bus = switch["bus"].to_numpy(dtype=np.int64) if has_sw else np.zeros(0, np.int64)
    sw_element = switch["element"].to_numpy(dtype=np.int64) if has_sw else np.zeros(0, np.int64)
    sw_z = _col(switch, "z_ohm", 0.0) if has_sw else np.zeros(0)
    impedance_switches: list[tuple[int, int, float]] = []
    open_lines: set[int] = set()
    open_trafos: set[int] = set()
    # pandapower: an open line/trafo switch disconnects that end of the element
    for k in range(len(switch)):
        b = int(sw_bus[k])
        element = int(sw_element[k])
        if sw_et[k] == "b":
            if sw_closed[k] and b in live and element in live:
                if sw_z[k] > 0:
                    impedance_switches.append((b, element, float(sw_z[k])))
                else:
                    uf.union(b, element)
        elif sw_et[k] == "l" and not sw_closed[k]:
            open_lines.add(element)
        elif sw_et[k] == "t" and not sw_closed[k]:
            open_trafos.add(element)

    vn_bus = pd.Series(_col(bus, "vn_kv", np.nan), index=bus.index)
    radial_problems: list[str] = []

    # shunt admittance per pandapower bus in MVA at 1 pu voltage (g: consumed P, b: produced Q)
    shunt_g: dict[int, float] = {}
    shunt_b: dict[int, float] = {}
    f_hz = float(net.get("f_hz", 50.0) or 50.0)

    def add_shunt(bus_: int, g_mva: float, b_mva: float) -> None:
        shunt_g[bus_] = shunt_g.get(bus_, 0.0) + g_mva
        shunt_b[bus_] = shunt_b.get(bus_, 0.0) + b_mva

    # candidate branches between pandapower buses: (bus_a, bus_b, z_ohm_at_b, ratio,
    # rated current at bus_a in kA, rated current at bus_b in kA, kind, element)
    raw: list[tuple[int, int, complex, float, float, float, str, int]] = []
    line = _table(net, "line")
    if len(line):
        ok = _in_service(line)
        r = _col(line, "r_ohm_per_km", 0.0) * _col(line, "length_km", 0.0)
        x = _col(line, "x_ohm_per_km", 0.0) * _col(line, "length_km", 0.0)
        par = _col(line, "parallel", 1.0)
        i_max = _col(line, "max_i_ka", np.inf) * _col(line, "df", 1.0) * par
        length = _col(line, "length_km", 0.0)
        b_line = 2.0 * np.pi * f_hz * _col(line, "c_nf_per_km", 0.0) * 1e-9 * length  # S
        g_line = _col(line, "g_us_per_km", 0.0) * 1e-6 * length  # S
        line_from = line["from_bus"].to_numpy(dtype=np.int64)
        line_to = line["to_bus"].to_numpy(dtype=np.int64)
        for k, idx in enumerate(line.index):
            a, b = int(line_from[k]), int(line_to[k])
            if not ok[k] or int(idx) in open_lines or a not in live or b not in live:
                continue
            z = complex(r[k], x[k]) / par[k]
            # π model: half the charging susceptance and shunt conductance at each end
            y_sh = complex(g_line[k], b_line[k]) * par[k] * float(vn_bus[a]) ** 2 / 2.0
            add_shunt(a, y_sh.real, y_sh.imag)
            add_shunt(b, y_sh.real, y_sh.imag)
            raw.append((a, b, z, 1.0, float(i_max[k]), float(i_max[k]), "line", int(idx)))
    trafo = _table(net, "trafo")
    if len(trafo):
        ok = _in_service(trafo)
        sn = _col(trafo, "sn_mva", np.nan)
        vk = _col(trafo, "vk_percent", np.nan) / 100.0
        vkr = _col(trafo, "vkr_percent", 0.0) / 100.0
        vn_hv = _col(trafo, "vn_hv_kv", np.nan)
        vn_lv = _col(trafo, "vn_lv_kv", np.nan)
        par = _col(trafo, "parallel", 1.0)
        df_trafo = _col(trafo, "df", 1.0)
        tap_pos = _col(trafo, "tap_pos", 0.0)
        tap_neutral = _col(trafo, "tap_neutral", 0.0)
        tap_step = _col(trafo, "tap_step_percent", 0.0) / 100.0
        # pandapower 3 changes the ratio only for tap changers of type "Ratio" or "Symmetrical"
        # (none, "Ideal" phase shifters and tabular ones here: no magnitude change); nets from
        # before pandapower 3 have no tap_changer_type and a tap_phase_shifter flag instead
        if "tap_changer_type" in trafo.columns:
            kinds = trafo["tap_changer_type"].astype(str).to_numpy()
            taps_ratio = np.isin(kinds, ["Ratio", "Symmetrical"])
        elif "tap_phase_shifter" in trafo.columns:
            taps_ratio = ~trafo["tap_phase_shifter"].fillna(value=False).to_numpy(dtype=bool)
        else:
            taps_ratio = np.ones(len(trafo), dtype=bool)
        if "tap_dependency_table" in trafo.columns:
            taps_ratio &= ~trafo["tap_dependency_table"].fillna(value=False).to_numpy(dtype=bool)
        pfe = _col(trafo, "pfe_kw", 0.0)
        i0 = _col(trafo, "i0_percent", 0.0)
        tap_side = (
            trafo["tap_side"].astype(str).to_numpy()
            if "tap_side" in trafo.columns
            else np.full(len(trafo), "hv")
        )
        hv_bus = trafo["hv_bus"].to_numpy(dtype=np.int64)
        lv_bus = trafo["lv_bus"].to_numpy(dtype=np.int64)
        for k, idx in enumerate(trafo.index):
            hv, lv = int(hv_bus[k]), int(lv_bus[k])
            if not ok[k] or int(idx) in open_trafos or hv not in live or lv not in live:
                continue
            factor = 1.0 + (tap_pos[k] - tap_neutral[k]) * tap_step[k] if taps_ratio[k] else 1.0
            hv_eff = vn_hv[k] * (factor if tap_side[k] == "hv" else 1.0)
            lv_eff = vn_lv[k] * (factor if tap_side[k] == "lv" else 1.0)
            ratio = (hv_eff / lv_eff) / (float(vn_bus[hv]) / float(vn_bus[lv]))
            # short-circuit impedance on the rating, referred to the low-voltage side (pandapower)
            z_ohm_lv = lv_eff**2 / sn[k]  # at the (tapped) rated low voltage, as pandapower
            rk = vkr[k] * z_ohm_lv
            xk = np.sqrt(max(vk[k] ** 2 - vkr[k] ** 2, 0.0)) * z_ohm_lv
            z = complex(rk, xk) / par[k]
            # pandapower's transformer loading (trafo_loading="current"): the larger of the two
            # sides' currents over the rated currents sn / (sqrt(3) vn_side_kv), / parallel / df
            s_rated = sn[k] * par[k] * df_trafo[k]
            i_hv = s_rated / (np.sqrt(3.0) * vn_hv[k])
            i_lv = s_rated / (np.sqrt(3.0) * vn_lv[k])
            # magnetizing branch (iron losses pfe_kw, no-load current i0_percent) at the hv end
            g_m = pfe[k] / 1000.0 * par[k]
            y_m = i0[k] / 100.0 * sn[k] * par[k]
            add_shunt(hv, g_m, -np.sqrt(max(y_m**2 - g_m**2, 0.0)))
            raw.append((hv, lv, z, float(ratio), float(i_hv), float(i_lv), "trafo", int(idx)))
    for a, b, z_ohm in impedance_switches:
        raw.append((a, b, complex(z_ohm, 0.0), 1.0, np.inf, np.inf, "switch", -1))

    shunt = _table(net, "shunt")
    if len(shunt):
        ok = _in_service(shunt)
        steps = _col(shunt, "step", 1.0)
        for k in range(len(shunt)):
            b = int(shunt["bus"].to_numpy()[k])
            if ok[k] and b in live:
                p_mw = float(_col(shunt, "p_mw", 0.0)[k]) * steps[k]
                q_mvar = float(_col(shunt, "q_mvar", 0.0)[k]) * steps[k]
                add_shunt(b, p_mw, -q_mvar)

    for table in ("trafo3w", "impedance", "dcline", "xward", "tcsc", "vsc"):
        df = _table(net, table)
        if len(df) and _in_service(df).any():
            radial_problems.append(f"{table} elements are not supported by DistFlow")

    # slack
    ext = net.ext_grid[_in_service(net.ext_grid)]
    ext = ext[ext["bus"].isin(live)]
    if len(ext) == 0:
        problems.add("ext_grid", "no in-service external grid on an in-service bus")
        problems.raise_if_any()
    if len(ext) > 1:
        radial_problems.append(f"{len(ext)} external grids (DistFlow needs one slack)")
    slack_bus = uf.find(int(ext["bus"].iat[0]))
    slack_vm = float(_col(ext, "vm_pu", 1.0)[0])

    # connectivity over the fused buses
    groups = sorted({uf.find(b) for b in live_buses})
    adjacency: dict[int, list[int]] = {g: [] for g in groups}
    for k, (a, b, *_rest) in enumerate(raw):
        ga, gb = uf.find(a), uf.find(b)
        if ga != gb:
            adjacency[ga].append(k)
            adjacency[gb].append(k)
    reached = {slack_bus}
    queue = deque([slack_bus])
    while queue:
        g = queue.popleft()
        for k in adjacency[g]:
            a, b = uf.find(raw[k][0]), uf.find(raw[k][1])
            other = b if a == g else a
            if other not in reached:
                reached.add(other)
                queue.append(other)

    load_p, load_q = _per_bus(net, "load", live)
    sgen_p, _ = _per_bus(net, "sgen", live)
    gen_p, _ = _per_bus(net, "gen", live)
    gen_p = {b: gen_p.get(b, 0.0) + sgen_p.get(b, 0.0) for b in set(gen_p) | set(sgen_p)}
    active = set(load_p) | set(gen_p)
    isolated: list[int] = []
    stranded: list[int] = []
    for b in live_buses:
        if uf.find(b) in reached:
            continue
        if b in active and (abs(load_p.get(b, 0.0)) + abs(gen_p.get(b, 0.0))) > 0:
            stranded.append(b)
        else:
            isolated.append(b)
    if stranded:
        shown = ", ".join(str(b) for b in stranded[:20])
        radial_problems.append(
            f"disconnected: buses {shown} carry load or generation but no path to the slack"
        )

    nodes = [g for g in groups if g in reached]
    node_of = {g: i for i, g in enumerate(nodes)}
    bus_node = {b: node_of[uf.find(b)] for b in live_buses if uf.find(b) in reached}
    n = len(nodes)

    # merge parallel branches between the same node pair
    merged: dict[tuple[int, int], list[int]] = {}
    for k, (a, b, *_rest) in enumerate(raw):
        if a not in bus_node or b not in bus_node:
            continue
        na, nb = bus_node[a], bus_node[b]
        if na == nb:
            continue
        merged.setdefault((min(na, nb), max(na, nb)), []).append(k)

    # breadth-first tree from the slack
    slack = node_of[slack_bus]
    neighbours: dict[int, list[tuple[int, int]]] = {i: [] for i in range(n)}
    pairs = list(merged)
    for j, (na, nb) in enumerate(pairs):
        neighbours[na].append((nb, j))
        neighbours[nb].append((na, j))
    parent = np.full(n, -1, dtype=np.int64)
    parent_pair = np.full(n, -1, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    seen[slack] = True
    queue2 = deque([slack])
    order = [slack]
    while queue2:
        i = queue2.popleft()
        for other, j in neighbours[i]:
            if not seen[other]:
                seen[other] = True
                parent[other] = i
                parent_pair[other] = j
                queue2.append(other)
                order.append(other)
    if len(pairs) != n - 1:
        radial_problems.append(
            f"meshed: {len(pairs)} branches between {n} nodes "
            f"({len(pairs) - n + 1} independent loop(s)); open switches to make it radial"
        )
    depth = np.zeros(n, dtype=np.int64)
    for i in order[1:]:
        depth[i] = depth[parent[i]] + 1

    n_b = len(pairs)
    b_from = np.zeros(n_b, dtype=np.int64)
    b_to = np.zeros(n_b, dtype=np.int64)
    b_r = np.zeros(n_b)
    b_x = np.zeros(n_b)
    b_ratio = np.ones(n_b)
    b_i_from = np.zeros(n_b)
    b_i = np.zeros(n_b)
    b_kind: list[str] = []
    b_elem = np.zeros(n_b, dtype=np.int64)
    line_branch: dict[int, int] = {}
    trafo_branch: dict[int, int] = {}
    s_base_kva = _s_base(load_p, gen_p)
    for j, key in enumerate(pairs):
        na, nb = key
        # orient away from the slack: the end nearer the slack (smaller depth) is "from"
        if depth[na] > depth[nb] or (depth[na] == depth[nb] and parent[na] == nb):
            na, nb = nb, na
        b_from[j], b_to[j] = na, nb
        admittance = 0j
        ratios = []
        i_from_tot = 0.0
        i_tot = 0.0
        for k in merged[key]:
            a, b, z, ratio, i_a, i_b, kind, elem = raw[k]
            # impedance in ohm at the element's second bus; move it to node nb's voltage level
            at_b = bus_node[b] == nb
            level_kv = float(vn_bus[b] if at_b else vn_bus[a])
            z_pu = z / (level_kv**2 / (s_base_kva / 1000.0))
            admittance += 1.0 / z_pu
            ratios.append(ratio if bus_node[a] == na else 1.0 / ratio)
            # ratings of parallel elements add up (pandapower's parallel: n identical systems)
            i_tot += i_b if at_b else i_a
            i_from_tot += i_a if at_b else i_b
            if kind == "line":
                line_branch[elem] = j
            elif kind == "trafo":
                trafo_branch[elem] = j
        z_eq = 1.0 / admittance
        b_r[j], b_x[j] = z_eq.real, z_eq.imag
        b_ratio[j] = float(np.mean(ratios))
        if max(ratios) - min(ratios) > 1e-9:
            radial_problems.append(
                f"parallel transformers between nodes {na} and {nb} differ in ratio"
            )
        b_i_from[j], b_i[j] = i_from_tot, i_tot
        first = raw[merged[key][0]]
        b_kind.append(first[6])
        b_elem[j] = first[7]
    parent_branch = np.full(n, -1, dtype=np.int64)
    parent_branch[np.arange(n) != slack] = parent_pair[np.arange(n) != slack]
    vn_to = np.asarray([float(vn_bus[nodes[i]]) for i in b_to], dtype=np.float64)
    b_i, b_i_from = _placeholder_ratings_removed(b_i, b_i_from)
    b_s = np.sqrt(3.0) * vn_to * b_i * 1000.0

    node_bus = np.asarray(nodes, dtype=np.int64)
    names = _node_names(bus, nodes)
    vmin = _col(bus, "min_vm_pu", DEFAULT_VMIN_PU)
    vmax = _col(bus, "max_vm_pu", DEFAULT_VMAX_PU)
    vmin_s = pd.Series(vmin, index=bus.index)
    vmax_s = pd.Series(vmax, index=bus.index)
    node_vmin = np.full(n, -np.inf)
    node_vmax = np.full(n, np.inf)
    lp = np.zeros(n)
    lq = np.zeros(n)
    gp = np.zeros(n)
    gq = np.zeros(n)
    gq_map = _per_bus(net, "sgen", live)[1]
    sh_g = np.zeros(n)
    sh_b = np.zeros(n)
    s_base_mva = s_base_kva / 1000.0
    for b, i in bus_node.items():
        # MVA drawn / produced at nominal voltage = per unit admittance times s_base
        sh_g[i] += shunt_g.get(b, 0.0) / s_base_mva
        sh_b[i] += shunt_b.get(b, 0.0) / s_base_mva
        node_vmin[i] = max(node_vmin[i], float(vmin_s[b]))
        node_vmax[i] = min(node_vmax[i], float(vmax_s[b]))
        lp[i] += load_p.get(b, 0.0)
        lq[i] += load_q.get(b, 0.0)
        gp[i] += gen_p.get(b, 0.0)
        gq[i] += gq_map.get(b, 0.0)

    return Feeder(
        name=name,
        net=net,
        s_base_kva=s_base_kva,
        node_bus=_ro(node_bus),
        node_name=names,
        bus_node=bus_node,
        vn_kv=_ro(np.asarray([float(vn_bus[g]) for g in nodes])),
        slack=slack,
        slack_vm_pu=slack_vm,
        parent=_ro(parent),
        parent_branch=_ro(parent_branch),
        branch_from=_ro(b_from),
        branch_to=_ro(b_to),
        branch_r_pu=_ro(b_r),
        branch_x_pu=_ro(b_x),
        branch_ratio=_ro(b_ratio),
        branch_s_max_kva=_ro(b_s),
        branch_i_max_ka=_ro(b_i),
        branch_i_max_from_ka=_ro(b_i_from),
        branch_kind=_ro(np.asarray(b_kind, dtype=np.str_)),
        branch_element=_ro(b_elem),
        line_branch=line_branch,
        trafo_branch=trafo_branch,
        load_p_kw=_ro(lp),
        load_q_kvar=_ro(lq),
        gen_p_kw=_ro(gp),
        gen_q_kvar=_ro(gq),
        vmin_pu=_ro(node_vmin),
        vmax_pu=_ro(node_vmax),
        shunt_g_pu=_ro(sh_g),
        shunt_b_pu=_ro(sh_b),
        isolated_buses=tuple(isolated),
        radial_problems=tuple(radial_problems),
        node_geodata=_ro(_bus_positions(net, node_bus)),
        geodata_lonlat=all(c in bus.columns for c in _SIMBENCH_BUS_COLUMNS),
        unsupplied_buses=tuple(stranded),
        unsupplied_load_kw=_ro(np.asarray([load_p.get(b, 0.0) for b in stranded], dtype=float)),
        unsupplied_gen_kw=_ro(np.asarray([gen_p.get(b, 0.0) for b in stranded], dtype=float)),
    )


#: Columns only SimBench's bus tables carry (they mark WGS84 longitude/latitude geodata).
_SIMBENCH_BUS_COLUMNS = ("subnet", "voltLvl")


def _bus_positions(net: Any, buses: IntArray) -> FloatArray:
    """``(x, y)`` of each bus in the net's geodata, NaN where it has none (GeoJSON RFC 7946)."""
    xy = np.full((buses.size, 2), np.nan)
    bus = net.bus
    if "geo" in bus.columns:
        geo = bus["geo"].reindex(buses)
        xy = np.asarray([_geojson_point(value) for value in geo], dtype=np.float64).reshape(-1, 2)
    missing = ~np.isfinite(xy).all(axis=1)
    table = net.get("bus_geodata", None)
    if missing.any() and isinstance(table, pd.DataFrame) and {"x", "y"} <= set(table.columns):
        old = table.reindex(buses[missing])
        xy[missing, 0] = old["x"].to_numpy(dtype=np.float64)
        xy[missing, 1] = old["y"].to_numpy(dtype=np.float64)
    return xy


def _geojson_point(value: Any) -> tuple[float, float]:
    """``(x, y)`` of a GeoJSON point (a string or an already parsed mapping); NaN otherwise."""
    nan = (np.nan, np.nan)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return nan
    if not isinstance(value, dict):
        return nan
    coordinates = value.get("coordinates")
    if value.get("type") != "Point" or not isinstance(coordinates, list | tuple):
        return nan
    if len(coordinates) < 2:
        return nan
    try:
        return float(coordinates[0]), float(coordinates[1])
    except (TypeError, ValueError):
        return nan


#: A rated current at or above this (kA) is a placeholder, not a rating: no distribution cable,
#: overhead line or transformer winding carries 100 kA (the largest conductors carry a few kA),
#: while tools ship 9999 or 99999 kA to mean "no limit" (pandapower's case33bw). The rule reads
#: the rating alone, never the net's own load: a feeder whose load comes from device populations
#: (its own loads zero) keeps its real ratings.
PLACEHOLDER_RATING_KA = 100.0


def _placeholder_ratings_removed(
    i_to: FloatArray, i_from: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Ratings with placeholders (not finite, or >= :data:`PLACEHOLDER_RATING_KA`) as ``inf``."""
    unrated = ~np.isfinite(i_to) | (i_to >= PLACEHOLDER_RATING_KA)
    return (
        np.where(unrated, np.inf, i_to).astype(np.float64),
        np.where(unrated, np.inf, i_from).astype(np.float64),
    )


def _s_base(load_p: dict[int, float], gen_p: dict[int, float]) -> float:
    """Power base: the power of ten at or below the larger of total load and generation."""
    total = max(sum(abs(v) for v in load_p.values()), sum(abs(v) for v in gen_p.values()))
    if total <= 0:
        return 1000.0
    return float(10.0 ** np.floor(np.log10(total)))


def _node_names(bus: pd.DataFrame, nodes: list[int]) -> tuple[str, ...]:
    names = []
    for g in nodes:
        value = bus["name"].get(g) if "name" in bus.columns else None
        names.append(
            str(g)
            if value is None or (isinstance(value, float) and np.isnan(value))
            else str(value)
        )
    return tuple(names)


def _per_bus(net: Any, table: str, live: set[int]) -> tuple[dict[int, float], dict[int, float]]:
    """In-service ``p_mw · scaling``, ``q_mvar · scaling`` of a table, summed per bus, in kW."""
    df = _table(net, table)
    p: dict[int, float] = {}
    q: dict[int, float] = {}
    if len(df) == 0:
        return p, q
    ok = _in_service(df)
    scale = _col(df, "scaling", 1.0)
    pv = _col(df, "p_mw", 0.0) * scale * 1000.0
    qv = _col(df, "q_mvar", 0.0) * scale * 1000.0
    for k in range(len(df)):
        b = int(df["bus"].to_numpy()[k])
        if ok[k] and b in live:
            p[b] = p.get(b, 0.0) + float(pv[k])
            q[b] = q.get(b, 0.0) + float(qv[k])
    return p, q


# --------------------------------------------------------------------------------------------
# attaching devices to buses


def spread_over_load_buses(
    n_devices: int, feeder: Feeder, rng: np.random.Generator | None = None
) -> IntArray:
    """Node of each of ``n_devices`` devices, spread over nodes in proportion to nominal load.

    Parameters
    ----------
    n_devices : int
        Number of devices (prosumers) to place.
    feeder : Feeder
        The feeder; its ``load_p_kw`` gives each node's share.
    rng : numpy.random.Generator, optional
        Without it the split is deterministic: largest-remainder apportionment of the counts,
        devices sorted by node. With it each device draws its node independently with
        probability equal to the node's load share.

    Returns
    -------
    (n_devices,) int
        Node index (into the feeder's nodes) of every device.

    """
    problems = Problems(subject="spread_over_load_buses")
    if n_devices < 0:
        problems.add("n_devices", f"must be non-negative, got {n_devices}")
    share = np.clip(np.asarray(feeder.load_p_kw, dtype=np.float64), 0.0, None)
    if share.sum() <= 0:
        problems.add("feeder", "has no load to spread devices over")
    problems.raise_if_any()
    share = share / share.sum()
    if rng is not None:
        return np.asarray(rng.choice(share.size, size=n_devices, p=share), dtype=np.int64)
    exact = share * n_devices
    counts = np.floor(exact).astype(np.int64)
    remainder = n_devices - int(counts.sum())
    if remainder > 0:
        # largest remainders first; ties go to the lower node index (stable sort)
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:remainder]] += 1
    return bus_of_devices(counts, feeder)


def bus_of_devices(counts: npt.ArrayLike, feeder: Feeder | None = None) -> IntArray:
    """Node of every device given a device count per node: ``[2, 0, 1] -> [0, 0, 2]``.

    Parameters
    ----------
    counts : (N,) int
        Devices at every node.
    feeder : Feeder, optional
        When given, ``counts`` must have one entry per node of this feeder.

    """
    arr = np.asarray(counts)
    problems = Problems(subject="device counts per bus")
    if arr.ndim != 1:
        problems.add("counts", f"must be one-dimensional, got shape {arr.shape}")
        problems.raise_if_any()
    if feeder is not None and arr.size != feeder.n_nodes:
        problems.add("counts", f"needs {feeder.n_nodes} entries (one per node), got {arr.size}")
    if not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        problems.check(
            ~np.isfinite(as_float) | (as_float != np.round(as_float)),
            "counts",
            "must be whole numbers",
        )
    problems.raise_if_any()
    ints = arr.astype(np.int64)
    problems.check(ints < 0, "counts", "must be non-negative")
    problems.raise_if_any()
    return np.repeat(np.arange(ints.size, dtype=np.int64), ints)


def simbench_node_profiles(
    feeder: Feeder, start: int = 0, periods: int = 96
) -> tuple[FloatArray, FloatArray]:
    """Net consumption per node from the SimBench time series shipped with the feeder's net.

    SimBench grids carry yearly quarter-hour profiles (``net.profiles``); this applies them to
    the loads and static generators (``simbench.get_absolute_values``) and sums per node.

    Parameters
    ----------
    feeder : Feeder
        A feeder loaded from a SimBench code.
    start : int
        First quarter-hour of the year (0 = 1 January 00:00).
    periods : int
        Number of quarter-hours.

    Returns
    -------
    p_kw, q_kvar : (periods, N) float
        Net consumption per quarter-hour and node (loads minus static generation), positive =
        consumption; time first, as every multi-period array of the package.

    Raises
    ------
    ValidationError
        The net has no SimBench profiles, or the window is outside the year.

    """
    import simbench  # noqa: PLC0415

    problems = Problems(subject=f"profiles of feeder {feeder.name!r}")
    profiles = getattr(feeder.net, "profiles", None) if "profiles" in feeder.net else None
    if not isinstance(profiles, dict) or not profiles:
        problems.add("feeder", "has no SimBench profiles (load it by a SimBench code)")
        problems.raise_if_any()
    values = simbench.get_absolute_values(feeder.net, profiles_instead_of_study_cases=True)
    steps = len(values[("load", "p_mw")])
    if start < 0 or periods < 1 or start + periods > steps:
        problems.add("start/periods", f"window [{start}, {start + periods}) outside [0, {steps})")
    problems.raise_if_any()
    n = feeder.n_nodes
    p = np.zeros((periods, n))
    q = np.zeros((periods, n))
    window = slice(start, start + periods)
    for table, sign in (("load", 1.0), ("sgen", -1.0)):
        df = _table(feeder.net, table)
        if len(df) == 0:
            continue
        ok = _in_service(df)
        for column, target in (("p_mw", p), ("q_mvar", q)):
            key = (table, column)
            if key not in values or values[key].shape[1] == 0:
                continue
            frame = values[key].iloc[window]
            for k, idx in enumerate(df.index):
                b = int(df["bus"].to_numpy()[k])
                if ok[k] and b in feeder.bus_node and idx in frame.columns:
                    target[:, feeder.bus_node[b]] += (
                        sign * 1000.0 * frame[idx].to_numpy(dtype=np.float64)
                    )
    return p, q
