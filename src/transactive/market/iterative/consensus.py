"""Economic dispatch without a coordinator: Zhang & Chow's incremental cost consensus (ICC).

Zhang and Chow, "Convergence analysis of the incremental cost consensus algorithm under different
communication network topologies in a smart grid", IEEE Trans. Power Systems 27(4), 2012, which
extends the ICC of their 2011 papers (Zhang, Ying and Chow, "Decentralizing the economic dispatch
problem using a two-level incremental cost consensus algorithm in a smart grid environment",
NAPS 2011). The equation numbers of those papers are not reproduced here; each formula below names
the step of the paper it implements.

The problem (the paper's economic dispatch): units ``i = 1..n`` with quadratic costs
``C_i(P_i) = a_i + b_i P_i + c_i P_i^2`` (currency/h, ``P_i`` in kW, ``c_i > 0``) and limits
``P_min_i <= P_i <= P_max_i`` share a demand ``P_D``:

    minimize  sum_i C_i(P_i)   subject to  sum_i P_i = P_D,  P_min_i <= P_i <= P_max_i.

At the optimum every unit inside its limits runs at one incremental cost ``lambda_i = b_i + 2 c_i
P_i = lambda*`` (currency/kWh), the balance constraint's multiplier; a unit at a limit has its
incremental cost on the far side of ``lambda*`` (the equal-incremental-cost rule with limits).

The algorithm (:func:`incremental_cost_consensus`), one round ``k`` per message exchange:

- every unit sends its ``lambda_j[k-1]`` to its neighbours in the communication graph (no
  coordinator), and updates ``lambda_i[k] = sum_j d_ij lambda_j[k-1]`` over itself and its
  neighbours (the paper's first-order discrete consensus), with the paper's row-stochastic matrix
  built from the graph Laplacian ``L``: ``d_ij = |l_ij| / sum_j |l_ij|``, i.e. ``d_ii = 1/2`` and
  ``d_ij = 1 / (2 deg_i)`` for a neighbour (:meth:`CommunicationGraph.update_matrix`);
- the leader, which measures the power mismatch ``DeltaP[k-1] = P_D - sum_i P_i[k-1]``, adds
  ``epsilon DeltaP[k-1]`` to its own update (the paper's leader update; ``epsilon`` its
  convergence coefficient, in currency/kWh per kW);
- every unit sets ``P_i[k] = (lambda_i[k] - b_i) / (2 c_i)`` and clips it to its limits (the
  paper's treatment of limits: the output is clipped to the violated limit; the unit's
  ``lambda_i`` keeps taking part in the consensus).

Convergence (the paper's matrix form). Without limits the iteration is linear,
``lambda[k] = (D - epsilon e_l s^T) lambda[k-1] + const`` with ``s_i = 1 / (2 c_i)`` (kW per
currency/kWh) and ``e_l`` the leader's unit vector; its fixed point is a consensus at the optimal
``lambda*`` with zero mismatch, and it converges iff the spectral radius of
``M(epsilon) = D - epsilon e_l s^T`` is below 1. :func:`epsilon_bound` computes the exact range
``0 < epsilon < epsilon_bar`` of that condition from one symmetric eigendecomposition: ``D`` is
similar to the symmetric ``(I + Deg^-1/2 A Deg^-1/2) / 2`` (eigenvalues in ``[0, 1]``, the 1
simple on a connected graph), so an eigenvalue of the rank-one update ``M`` lies on the unit
circle exactly where ``1 + epsilon s^T (zI - D)^-1 e_l = 0`` with ``|z| = 1`` — at ``z = -1`` or
where the secular function is real, a one-dimensional root search. With limits, the units at a
limit do not respond (their ``s_i`` is 0 locally), so near the optimum the iteration is the linear
one of the *responsive* units (those strictly inside their limits at the optimum): it converges
locally iff ``epsilon`` is below *their* bound, which may be well below the bound of all units (a
responsive unit far from the leader in the graph narrows it). :func:`incremental_cost_consensus`
therefore refuses ``epsilon`` at or above the responsive units' bound (necessary for local
convergence) and warns (:class:`~transactive.market.iterative.framework.StepSizeWarning`) at or
above all units' bound (the paper's unconstrained condition); its default takes 0.3 times the
smaller of the two (a margin measured, not proven: on 400 random problems with limits on line,
ring, complete and random graphs of 3 to 15 units, half the bound left one run oscillating
between limits, 0.25, 0.3 and 0.35 times it none; the median rounds at 0.3 were 1.3 times those
at a half). Finding the responsive set needs the solution's incremental
cost; it is found exactly by a one-dimensional solve (the sorted breakpoints of
``sum_i P_i(lambda)``), as the designer choosing ``epsilon`` would offline with the same global
knowledge the bound needs (the graph's spectrum, every unit's cost). The iteration itself uses
none of it. Neither bound proves *global* convergence with limits (switching between limits can
sustain oscillations); a run that does not converge is reported as such.

Storage (our model, not the paper's). A storage unit is a unit whose output may be negative: it
discharges (``P > 0``, generation) or charges (``P < 0``, load) within ``+-power_max_kw`` and
within what its stored energy allows over the single period (the one-period case of the
generalized battery of Hao et al. 2015 that :mod:`transactive.devices.flexibility` uses): with
stored energy ``E_0`` in ``[E_min, E_max]``, period ``h`` and efficiencies ``eta_c``, ``eta_d``,
``-min(P_max, (E_max - E_0) / (eta_c h)) <= P <= min(P_max, eta_d (E_0 - E_min) / h)``. Its cost
is ``value_per_kwh P + cycling_cost P^2``: the opportunity cost of the stored energy (the price at
which it is worth keeping, e.g. the expected later price) plus a quadratic cost of cycling
around zero output (degradation growing with the power), so its incremental cost is
``value + 2 cycling P`` and the ICC update applies unchanged: it charges when the consensus price
is below its value and discharges above it. Efficiency losses enter the limits only.

Faults. Messages go through :class:`~transactive.market.iterative.framework.Channel`, one
channel agent per *directed* edge (a price per agent: the lambda its sender sends), so a lost or
delayed message leaves its receiver with the last lambda it heard from that neighbour. The
leader's mismatch is a measurement, not a message, and there is no uplink: the channel's
registration counts one empty schedule message per edge, so ``extra["messages_per_unit"]``
counts the lambda messages alone. The convergence bounds are for perfect
communication; under loss and delay convergence is observed, not proven.

Residuals (relative, so one tolerance fits every size): primal ``|DeltaP| / P_D``; dual the spread
``(max - min)`` of every lambda a unit holds (its own and the last heard from each neighbour,
which it uses next round) over the mean magnitude of the units' lambdas. The stopping rule is
the simulation's observer: the units themselves do not know the residuals.

Sign: the problem speaks of outputs (``output_*_kw``, generation positive, as the paper); results'
``schedules_kw`` follow the project's convention, positive consumption, so they are ``-output``.

Pure computation: arrays in, frozen dataclasses out; randomness only through explicit seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cvxpy as _cvxpy
import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import brentq
from scipy.sparse.csgraph import connected_components

from transactive.curves import checked_ids, default_ids
from transactive.errors import Problems, is_count, is_real
from transactive.market.iterative.framework import (
    CentralizedOptimum,
    Channel,
    CommsFaults,
    IterativeResult,
    Recorder,
    StoppingRule,
    checked_step_size,
)

__all__ = [
    "CommunicationGraph",
    "DispatchProblem",
    "StorageUnits",
    "centralized_dispatch",
    "dispatch_cost_per_h",
    "epsilon_bound",
    "incremental_cost_consensus",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

#: Share of the convergence bound the default epsilon takes (an empirical margin, module docstring).
DEFAULT_EPSILON_SHARE = 0.3
#: Relative slack of the feasibility checks (float rounding of sums of kW).
_FEAS_RTOL = 1e-9
#: A unit within this share of its range (or 1e-9 kW) of a limit at the optimum is degenerate:
#: both the responsive sets with and without it must be stable.
_LIMIT_RTOL = 1e-9
#: Points of the search grid for the secular function's real crossings.
_CROSSING_GRID = 4000
#: Nodes of a component listed in a refusal before the rest are counted.
_SHOWN_NODES = 10

cp: Any = _cvxpy  # cvxpy ships partial type information; treat its namespace as untyped

_BOUND_REFERENCE = (
    "Zhang & Chow 2012, the ICC iteration's matrix form: spectral radius of "
    "D - epsilon e_leader s^T below 1, s the responsive units' 1/(2 c_i)"
)


def _readonly(values: npt.ArrayLike) -> FloatArray:
    out: FloatArray = np.array(values, dtype=np.float64)
    out.setflags(write=False)
    return out


def _checked_problem(problem: object, subject: str) -> DispatchProblem:
    if not isinstance(problem, DispatchProblem):
        problems = Problems(subject=subject)
        problems.add("problem", f"must be a DispatchProblem, got {type(problem).__name__}")
        problems.raise_if_any()
    assert isinstance(problem, DispatchProblem)
    return problem


# ---------------------------------------------------------------------------------- the graph


@dataclass(frozen=True, eq=False)
class CommunicationGraph:
    """An undirected, connected communication graph between ``n_nodes`` units.

    Attributes
    ----------
    n_nodes:
        Number of nodes (units), ``>= 1``.
    edges:
        ``(E, 2)`` node indices of the undirected edges. Stored normalised: each edge once as
        ``(i, j)`` with ``i < j``, sorted.

    Raises
    ------
    ValidationError
        A bad ``n_nodes``; edges that are not integer pairs, with an index out of range, a self
        loop or a repeated pair (each named by its position); a graph that is not connected
        (naming the nodes of every component).

    """

    n_nodes: int
    edges: IntArray

    def __post_init__(self) -> None:
        problems = Problems(subject="communication graph")
        n = self.n_nodes
        if not is_count(n) or int(n) < 1:
            problems.add("n_nodes", f"must be an integer >= 1, got {n!r}")
            problems.raise_if_any()
        n = int(n)
        try:
            raw = np.asarray(self.edges)
        except (TypeError, ValueError):
            problems.add("edges", "must be an (E, 2) array of node indices")
            problems.raise_if_any()
        if raw.size == 0:
            raw = np.zeros((0, 2), dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != 2:
            problems.add("edges", f"must have shape (E, 2), got {raw.shape}")
            problems.raise_if_any()
        if raw.dtype.kind not in "iu":
            finite = np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
            if not bool(np.all(finite & (np.where(finite, raw, 0) == np.round(raw)))):
                problems.add("edges", f"must hold integer node indices, got {raw.dtype}")
                problems.raise_if_any()
        e = raw.astype(np.int64)
        problems.check(((e < 0) | (e >= n)).any(axis=1), "edges", f"node index outside 0..{n - 1}")
        problems.check(e[:, 0] == e[:, 1], "edges", "is a self loop")
        problems.raise_if_any()
        norm = np.sort(e, axis=1)
        keys = norm[:, 0] * n + norm[:, 1]
        _, first = np.unique(keys, return_index=True)
        repeated = np.ones(e.shape[0], dtype=bool)
        repeated[first] = False
        problems.check(repeated, "edges", "repeats an edge already listed (undirected)")
        problems.raise_if_any()
        order = np.argsort(keys, kind="stable")
        norm = np.ascontiguousarray(norm[order])
        norm.setflags(write=False)
        object.__setattr__(self, "n_nodes", n)
        object.__setattr__(self, "edges", norm)
        if n > 1:
            adjacency = sparse.coo_matrix(
                (np.ones(norm.shape[0]), (norm[:, 0], norm[:, 1])), shape=(n, n)
            )
            count, labels = connected_components(adjacency, directed=False)
            if count > 1:
                parts = []
                for c in range(int(count)):
                    nodes = np.flatnonzero(labels == c)
                    shown = ", ".join(str(int(i)) for i in nodes[:_SHOWN_NODES])
                    more = nodes.size - _SHOWN_NODES
                    parts.append("{" + shown + (f", ... {more} more" if more > 0 else "") + "}")
                problems.add(
                    "edges",
                    f"the graph is not connected: {int(count)} components "
                    "(the consensus cannot reach every unit)",
                    parts,
                )
                problems.raise_if_any()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_edges(cls, n_nodes: int, edges: npt.ArrayLike) -> CommunicationGraph:
        """The graph of ``n_nodes`` nodes and the undirected ``edges`` (pairs of node indices)."""
        return cls(n_nodes=n_nodes, edges=np.asarray(edges))

    @classmethod
    def line(cls, n: int) -> CommunicationGraph:
        """A path ``0 - 1 - ... - (n-1)``; ``n >= 1``."""
        _check_size("line", n, 1)
        i = np.arange(int(n) - 1)
        return cls(n_nodes=int(n), edges=np.column_stack([i, i + 1]))

    @classmethod
    def ring(cls, n: int) -> CommunicationGraph:
        """A cycle ``0 - 1 - ... - (n-1) - 0``; ``n >= 3``."""
        _check_size("ring", n, 3)
        i = np.arange(int(n))
        return cls(n_nodes=int(n), edges=np.column_stack([i, (i + 1) % int(n)]))

    @classmethod
    def complete(cls, n: int) -> CommunicationGraph:
        """Every pair of nodes joined; ``n >= 1``."""
        _check_size("complete", n, 1)
        i, j = np.triu_indices(int(n), k=1)
        return cls(n_nodes=int(n), edges=np.column_stack([i, j]))

    @classmethod
    def random_connected(cls, n: int, p: float, seed: int) -> CommunicationGraph:
        """A random connected graph: a random spanning tree plus every other pair with prob. ``p``.

        The tree is a random recursive tree over a random order of the nodes (each node after the
        first joins a uniformly drawn earlier one), so the graph is connected whatever ``p``;
        then each pair not in the tree is joined independently with probability ``p`` in
        ``[0, 1]`` (``p = 0``: a tree; ``p = 1``: the complete graph). Same seed, same graph.
        Draws over all ``n (n - 1) / 2`` pairs (memory O(n^2)).
        """
        _check_size("random_connected", n, 1)
        problems = Problems(subject="random graph")
        if not is_real(p) or not 0.0 <= float(p) <= 1.0:
            problems.add("p", f"must be a probability in [0, 1], got {p!r}")
        if not is_count(seed):
            problems.add("seed", f"must be an integer, got {seed!r}")
        problems.raise_if_any()
        n = int(n)
        rng = np.random.default_rng(int(seed))
        order = rng.permutation(n)
        if n > 1:
            earlier = rng.integers(0, np.arange(1, n))  # node order[k] joins order[earlier[k-1]]
            tree = np.sort(np.column_stack([order[1:], order[earlier]]), axis=1)
        else:
            tree = np.zeros((0, 2), dtype=np.int64)
        i, j = np.triu_indices(n, k=1)
        extra = rng.random(i.size) < float(p)
        in_tree = np.zeros(i.size, dtype=bool)
        if tree.shape[0]:
            # position of pair (a, b), a < b, in the row-major upper triangle
            a, b = tree[:, 0], tree[:, 1]
            in_tree[a * n - a * (a + 1) // 2 + (b - a - 1)] = True
        pairs = np.column_stack([i[extra & ~in_tree], j[extra & ~in_tree]])
        return cls(n_nodes=n, edges=np.concatenate([tree, pairs]).astype(np.int64))

    # ------------------------------------------------------------------ structure

    @property
    def n_edges(self) -> int:
        """Number of undirected edges E."""
        return int(self.edges.shape[0])

    @cached_property
    def degrees(self) -> IntArray:
        """``(n,)`` number of neighbours of each node."""
        deg = np.bincount(self.edges.ravel(), minlength=self.n_nodes).astype(np.int64)
        deg.setflags(write=False)
        return deg

    @cached_property
    def directed_edges(self) -> tuple[IntArray, IntArray]:
        """``(senders, receivers)``, ``(2E,)`` each: every edge in both directions."""
        s = np.concatenate([self.edges[:, 0], self.edges[:, 1]])
        r = np.concatenate([self.edges[:, 1], self.edges[:, 0]])
        s.setflags(write=False)
        r.setflags(write=False)
        return s, r

    @cached_property
    def self_weights(self) -> FloatArray:
        """``(n,)`` the diagonal ``d_ii`` of the update matrix (1/2; 1 for a lone node)."""
        out = np.where(self.degrees > 0, 0.5, 1.0)
        out.setflags(write=False)
        return out

    @cached_property
    def edge_weights(self) -> FloatArray:
        """``(2E,)`` ``d_ij = 1 / (2 deg_i)`` of each directed edge ``j -> i`` (receiver i)."""
        _, receivers = self.directed_edges
        w = 0.5 / self.degrees[receivers]
        w.setflags(write=False)
        return np.asarray(w, dtype=np.float64)

    def update_matrix(self) -> sparse.csr_matrix:
        """The paper's row-stochastic ``D``: ``d_ij = |l_ij| / sum_j |l_ij|`` from the Laplacian.

        With ``l_ii = deg_i`` and ``l_ij = -1`` for a neighbour this is ``d_ii = 1/2`` and
        ``d_ij = 1 / (2 deg_i)`` (a lone node keeps its own value, ``d_ii = 1``). Sparse, (n, n).
        """
        senders, receivers = self.directed_edges
        n = self.n_nodes
        rows = np.concatenate([np.arange(n), receivers])
        cols = np.concatenate([np.arange(n), senders])
        vals = np.concatenate([self.self_weights, self.edge_weights])
        return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))

    @cached_property
    def _spectrum(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(mu, Q, sqrt_pi)``: ``D = Pi^-1/2 Q diag(mu) Q^T Pi^1/2``, ``pi`` D's left 1-vector.

        ``pi_i = deg_i / sum deg`` (``D`` is a lazy random walk, reversible), so
        ``Pi^1/2 D Pi^-1/2 = (I + Deg^-1/2 A Deg^-1/2) / 2`` is symmetric: one ``eigh``.
        """
        n = self.n_nodes
        if n == 1:
            return np.ones(1), np.ones((1, 1)), np.ones(1)
        deg = self.degrees.astype(np.float64)
        inv_sqrt = 1.0 / np.sqrt(deg)
        sym = np.zeros((n, n))
        i, j = self.edges[:, 0], self.edges[:, 1]
        val = 0.5 * inv_sqrt[i] * inv_sqrt[j]
        sym[i, j] = val
        sym[j, i] = val
        sym[np.arange(n), np.arange(n)] = 0.5
        mu, q = np.linalg.eigh(sym)
        sqrt_pi = np.sqrt(deg / deg.sum())
        return np.clip(mu, 0.0, 1.0), q, sqrt_pi

    def update_eigenvalues(self) -> FloatArray:
        """``(n,)`` eigenvalues of the update matrix ``D``, ascending, in ``[0, 1]``.

        The largest is 1 (simple: the graph is connected); the second largest sets the speed of
        pure consensus (the paper's comparison of topologies).
        """
        return self._spectrum[0].copy()


def _check_size(name: str, n: object, least: int) -> None:
    if not is_count(n) or int(n) < least:  # type: ignore[call-overload]
        problems = Problems(subject=f"{name} graph")
        problems.add("n", f"must be an integer >= {least}, got {n!r}")
        problems.raise_if_any()


# ---------------------------------------------------------------------------------- storage


@dataclass(frozen=True, eq=False)
class StorageUnits:
    """Storage units for one dispatch period (the module docstring's model).

    Attributes
    ----------
    power_max_kw:
        ``(M,)``, ``>= 0``: the most charging and the most discharging power.
    energy_kwh, energy_min_kwh, energy_max_kwh:
        ``(M,)``: stored energy at the period's start and its bounds,
        ``energy_min_kwh <= energy_kwh <= energy_max_kwh``.
    period_h:
        Length of the dispatch period in hours, ``> 0``.
    value_per_kwh:
        ``(M,)``: the opportunity cost of stored energy (currency/kWh), the linear cost term: the
        unit discharges above this price and charges below it.
    cycling_cost_per_kwh_per_kw:
        ``(M,)``, ``> 0``: the quadratic cost of cycling (currency/kWh per kW), so the cost is
        ``value_per_kwh P + cycling_cost_per_kwh_per_kw P^2`` (currency/h).
    charge_efficiency, discharge_efficiency:
        ``(M,)`` in ``(0, 1]``: stored energy gained per kWh charged; kWh delivered per kWh of
        stored energy spent. They enter the energy limits only.
    ids:
        ``(M,)`` unique ids; None gives ``storage-0 ...``.

    """

    power_max_kw: FloatArray
    energy_kwh: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    period_h: float
    value_per_kwh: FloatArray
    cycling_cost_per_kwh_per_kw: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray
    ids: StrArray | None = None

    def __post_init__(self) -> None:
        problems = Problems(subject="storage units")
        names = (
            "power_max_kw",
            "energy_kwh",
            "energy_min_kwh",
            "energy_max_kwh",
            "value_per_kwh",
            "cycling_cost_per_kwh_per_kw",
            "charge_efficiency",
            "discharge_efficiency",
        )
        arrays: dict[str, FloatArray] = {}
        for name in names:
            try:
                arrays[name] = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            except (TypeError, ValueError):
                problems.add(name, "must be an array of numbers")
        problems.raise_if_any()
        m = arrays["power_max_kw"].shape[0] if arrays["power_max_kw"].ndim == 1 else -1
        if m < 1:
            problems.add("power_max_kw", "must be a 1-D array of at least one unit")
        for name, values in arrays.items():
            if m >= 1 and values.shape != (m,):
                problems.add(name, f"must have shape (M,) = {(m,)}, got {values.shape}")
        h = self.period_h
        if not is_real(h) or float(h) <= 0:
            problems.add("period_h", f"must be a finite number > 0, got {h!r}")
        problems.raise_if_any()
        ids = (
            default_ids("storage", m)
            if self.ids is None
            else checked_ids(self.ids, m, subject="storage ids")
        )
        labels = ids.tolist()
        finite = True
        for name, values in arrays.items():
            finite &= problems.check(~np.isfinite(values), name, "not finite", labels)
        if finite:
            a = arrays
            problems.check(a["power_max_kw"] < 0, "power_max_kw", "must be >= 0", labels)
            problems.check(
                a["cycling_cost_per_kwh_per_kw"] <= 0, "cycling_cost_per_kwh_per_kw",
                "must be > 0 (strictly convex cost)", labels,
            )  # fmt: skip
            problems.check(
                a["energy_min_kwh"] > a["energy_max_kwh"], "energy_min_kwh",
                "exceeds energy_max_kwh", labels,
            )  # fmt: skip
            problems.check(
                (a["energy_kwh"] < a["energy_min_kwh"]) | (a["energy_kwh"] > a["energy_max_kwh"]),
                "energy_kwh", "outside [energy_min_kwh, energy_max_kwh]", labels,
            )  # fmt: skip
            for name in ("charge_efficiency", "discharge_efficiency"):
                problems.check((a[name] <= 0) | (a[name] > 1), name, "must lie in (0, 1]", labels)
        problems.raise_if_any()
        for name, values in arrays.items():
            object.__setattr__(self, name, _readonly(values))
        object.__setattr__(self, "period_h", float(h))
        object.__setattr__(self, "ids", ids)

    @property
    def n_units(self) -> int:
        """M."""
        return int(self.power_max_kw.shape[0])

    @property
    def output_max_kw(self) -> FloatArray:
        """``(M,)`` the most discharge: ``min(P_max, eta_d (E_0 - E_min) / h)``."""
        energy = self.discharge_efficiency * (self.energy_kwh - self.energy_min_kwh) / self.period_h
        return np.minimum(self.power_max_kw, energy)

    @property
    def output_min_kw(self) -> FloatArray:
        """``(M,)`` minus the most charge: ``-min(P_max, (E_max - E_0) / (eta_c h))``."""
        room = (self.energy_max_kwh - self.energy_kwh) / (self.charge_efficiency * self.period_h)
        return -np.minimum(self.power_max_kw, room)


# ---------------------------------------------------------------------------------- the problem


@dataclass(frozen=True, eq=False)
class DispatchProblem:
    """One period's economic dispatch over a communication graph (the module docstring).

    Attributes
    ----------
    cost_constant_per_h:
        ``(n,)``: ``a_i`` (currency/h).
    cost_linear_per_kwh:
        ``(n,)``: ``b_i``, the incremental cost at zero output (currency/kWh).
    cost_quadratic_per_kwh_per_kw:
        ``(n,)``, ``> 0``: ``c_i`` (currency/kWh per kW), so ``lambda_i = b_i + 2 c_i P_i``.
    output_min_kw, output_max_kw:
        ``(n,)``: output limits (generation positive; a storage unit's minimum is negative).
    demand_kw:
        ``P_D > 0`` (kW), within ``[sum output_min_kw, sum output_max_kw]``.
    graph:
        The communication graph, one node per unit (node i is unit i).
    leader:
        Index of the unit that measures the mismatch.
    ids:
        ``(n,)`` unique unit ids; None gives ``unit-0 ...``.
    is_storage:
        ``(n,)`` which units are storage (for reporting); None: none. :meth:`build` sets it.

    Raises
    ------
    ValidationError
        Every bad field (shape, finiteness, ``c_i <= 0``, ``output_min_kw > output_max_kw``, by
        unit), a graph with another number of nodes, a leader index out of range, and a demand
        that is not > 0 or that the units cannot meet (above their total capacity or below their
        total minimum output).

    """

    cost_constant_per_h: FloatArray
    cost_linear_per_kwh: FloatArray
    cost_quadratic_per_kwh_per_kw: FloatArray
    output_min_kw: FloatArray
    output_max_kw: FloatArray
    demand_kw: float
    graph: CommunicationGraph
    leader: int
    ids: StrArray | None = None
    is_storage: BoolArray | None = None

    def __post_init__(self) -> None:
        problems = Problems(subject="dispatch problem")
        names = (
            "cost_constant_per_h",
            "cost_linear_per_kwh",
            "cost_quadratic_per_kwh_per_kw",
            "output_min_kw",
            "output_max_kw",
        )
        arrays: dict[str, FloatArray] = {}
        for name in names:
            try:
                arrays[name] = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            except (TypeError, ValueError):
                problems.add(name, "must be an array of numbers")
        graph: object = self.graph
        if not isinstance(graph, CommunicationGraph):
            problems.add("graph", f"must be a CommunicationGraph, got {type(graph).__name__}")
        problems.raise_if_any()
        lin = arrays["cost_linear_per_kwh"]
        n = lin.shape[0] if lin.ndim == 1 else -1
        if n < 1:
            problems.add("cost_linear_per_kwh", "must be a 1-D array of at least one unit")
        for name, values in arrays.items():
            if n >= 1 and values.shape != (n,):
                problems.add(name, f"must have shape (n,) = {(n,)}, got {values.shape}")
        if n >= 1 and self.graph.n_nodes != n:
            problems.add(
                "graph", f"must have one node per unit ({n}), got {self.graph.n_nodes} nodes"
            )
        if not is_count(self.leader) or not 0 <= int(self.leader) < max(n, 0):
            problems.add("leader", f"must be a unit index in 0..{n - 1}, got {self.leader!r}")
        demand = self.demand_kw
        if not is_real(demand) or float(demand) <= 0:
            problems.add(
                "demand_kw",
                f"must be a finite number > 0 (the residual is relative to it), got {demand!r}",
            )
        storage = np.zeros(max(n, 0), dtype=bool)
        if self.is_storage is not None:
            storage = np.asarray(self.is_storage)
            if storage.shape != (max(n, 0),) or storage.dtype != np.bool_:
                problems.add("is_storage", f"must be a boolean array of shape {(n,)}")
        problems.raise_if_any()
        ids = (
            default_ids("unit", n)
            if self.ids is None
            else checked_ids(self.ids, n, subject="unit ids")
        )
        labels = ids.tolist()
        finite = True
        for name, values in arrays.items():
            finite &= problems.check(~np.isfinite(values), name, "not finite", labels)
        if finite:
            problems.check(
                arrays["cost_quadratic_per_kwh_per_kw"] <= 0, "cost_quadratic_per_kwh_per_kw",
                "must be > 0 (strictly convex cost; the output is read off lambda)", labels,
            )  # fmt: skip
            problems.check(
                arrays["output_min_kw"] > arrays["output_max_kw"], "output_min_kw",
                "exceeds output_max_kw", labels,
            )  # fmt: skip
        problems.raise_if_any()
        cap = float(arrays["output_max_kw"].sum())
        floor = float(arrays["output_min_kw"].sum())
        d = float(demand)
        tol = _FEAS_RTOL * max(1.0, abs(d), abs(cap), abs(floor))
        if d > cap + tol:
            problems.add(
                "demand_kw",
                f"{d:.6g} kW exceeds the units' total capacity {cap:.6g} kW (infeasible)",
            )
        if d < floor - tol:
            problems.add(
                "demand_kw",
                f"{d:.6g} kW is below the units' total minimum output {floor:.6g} kW (infeasible)",
            )
        problems.raise_if_any()
        for name, values in arrays.items():
            object.__setattr__(self, name, _readonly(values))
        object.__setattr__(self, "demand_kw", d)
        object.__setattr__(self, "leader", int(self.leader))
        object.__setattr__(self, "ids", ids)
        storage = np.array(storage, dtype=bool)
        storage.setflags(write=False)
        object.__setattr__(self, "is_storage", storage)

    @classmethod
    def build(
        cls,
        *,
        cost_constant_per_h: npt.ArrayLike,
        cost_linear_per_kwh: npt.ArrayLike,
        cost_quadratic_per_kwh_per_kw: npt.ArrayLike,
        output_min_kw: npt.ArrayLike,
        output_max_kw: npt.ArrayLike,
        demand_kw: float,
        graph: CommunicationGraph,
        leader: int,
        ids: npt.ArrayLike | None = None,
        storage: StorageUnits | None = None,
    ) -> DispatchProblem:
        """Generators (the arrays) and, after them, ``storage`` as units of one problem.

        A storage unit becomes a unit with ``a = 0``, ``b = value_per_kwh``,
        ``c = cycling_cost_per_kwh_per_kw`` and its period's output limits; ``graph`` must have a
        node for every generator and storage unit, in that order.
        """
        given = {
            "cost_constant_per_h": cost_constant_per_h,
            "cost_linear_per_kwh": cost_linear_per_kwh,
            "cost_quadratic_per_kwh_per_kw": cost_quadratic_per_kwh_per_kw,
            "output_min_kw": output_min_kw,
            "output_max_kw": output_max_kw,
        }
        if storage is None:
            return cls(
                cost_constant_per_h=np.asarray(cost_constant_per_h),
                cost_linear_per_kwh=np.asarray(cost_linear_per_kwh),
                cost_quadratic_per_kwh_per_kw=np.asarray(cost_quadratic_per_kwh_per_kw),
                output_min_kw=np.asarray(output_min_kw),
                output_max_kw=np.asarray(output_max_kw),
                demand_kw=demand_kw,
                graph=graph,
                leader=leader,
                ids=None if ids is None else np.asarray(ids),
            )
        problems = Problems(subject="dispatch problem")
        gen: dict[str, FloatArray] = {}
        for name, values in given.items():
            try:
                gen[name] = np.atleast_1d(np.asarray(values, dtype=np.float64))
            except (TypeError, ValueError):
                problems.add(name, "must be an array of numbers")
            else:
                if gen[name].ndim != 1:
                    problems.add(name, f"must be a 1-D array, got shape {gen[name].shape}")
        given_storage: object = storage
        if not isinstance(given_storage, StorageUnits):
            problems.add("storage", f"must be StorageUnits, got {type(given_storage).__name__}")
        problems.raise_if_any()
        g = gen["cost_linear_per_kwh"].shape[0]
        m = storage.n_units
        gen_ids = default_ids("unit", g) if ids is None else np.asarray(ids, dtype=np.str_)
        assert storage.ids is not None  # set by StorageUnits' validation
        return cls(
            cost_constant_per_h=np.concatenate([gen["cost_constant_per_h"], np.zeros(m)]),
            cost_linear_per_kwh=np.concatenate([gen["cost_linear_per_kwh"], storage.value_per_kwh]),
            cost_quadratic_per_kwh_per_kw=np.concatenate(
                [gen["cost_quadratic_per_kwh_per_kw"], storage.cycling_cost_per_kwh_per_kw]
            ),
            output_min_kw=np.concatenate([gen["output_min_kw"], storage.output_min_kw]),
            output_max_kw=np.concatenate([gen["output_max_kw"], storage.output_max_kw]),
            demand_kw=demand_kw,
            graph=graph,
            leader=leader,
            ids=np.concatenate([gen_ids, storage.ids]),
            is_storage=np.concatenate([np.zeros(g, dtype=bool), np.ones(m, dtype=bool)]),
        )

    @property
    def n_units(self) -> int:
        """Number of units."""
        return int(self.cost_linear_per_kwh.shape[0])

    @property
    def slope_kw_per_price(self) -> FloatArray:
        """``(n,)`` ``1 / (2 c_i)``: kW of output per currency/kWh of incremental cost."""
        return 0.5 / self.cost_quadratic_per_kwh_per_kw

    def output_at(self, lambda_per_kwh: npt.ArrayLike) -> FloatArray:
        """Each unit's output at its incremental cost, clipped to its limits (the ICC's P step)."""
        lam = np.asarray(lambda_per_kwh, dtype=np.float64)
        raw = (lam - self.cost_linear_per_kwh) * self.slope_kw_per_price
        return np.clip(raw, self.output_min_kw, self.output_max_kw)


def dispatch_cost_per_h(problem: DispatchProblem, output_kw: npt.ArrayLike) -> float:
    """``sum_i a_i + b_i P_i + c_i P_i^2`` (currency/h): the objective of every run here."""
    p = np.asarray(output_kw, dtype=np.float64)
    return float(
        problem.cost_constant_per_h.sum()
        + problem.cost_linear_per_kwh @ p
        + problem.cost_quadratic_per_kwh_per_kw @ (p * p)
    )


# ---------------------------------------------------------------------------------- bounds


def _first_crossing(mu: FloatArray, residues: FloatArray) -> float:
    """The least ``epsilon > 0`` with a root of ``1 + epsilon g(z)`` on ``|z| = 1``.

    ``g(z) = sum_k r_k / (z - mu_k)``, ``mu_k`` in ``[0, 1]``. On ``z = e^{i theta}``,
    ``Im g = -sin(theta) h(cos theta)`` with ``h(c) = sum_k r_k / (1 - 2 mu_k c + mu_k^2)``, so
    ``g`` is real at ``z = -1`` and where ``h = 0``; there ``Re g = -sum_k r_k mu_k / den_k``
    (``= -sum_k r_k / (1 + mu_k)`` at ``z = -1``), and ``epsilon = -1 / Re g`` where ``Re g < 0``.
    The roots of ``h`` are bracketed on a grid in ``u = 1 - c`` (geometric, finest where the
    terms with ``mu_k`` near 1 vary) and refined by Brent's method. ``inf`` if none.
    """
    candidates: list[float] = []
    at_minus_one = float(np.sum(residues / (1.0 + mu)))
    if at_minus_one > 0:
        candidates.append(1.0 / at_minus_one)
    one_minus = np.maximum(1.0 - mu, 0.0)
    inner = (mu > 0) & (mu < 1.0 - 1e-14)
    if inner.any():
        u_turn = float(np.min(one_minus[inner] ** 2 / (2.0 * mu[inner])))
        u_lo = max(1e-3 * u_turn, 1e-18)
    else:
        u_lo = 1e-12
    grid = np.geomspace(u_lo, 2.0, _CROSSING_GRID)

    def h(u: float) -> float:
        return float(np.sum(residues / (one_minus**2 + 2.0 * mu * u)))

    chunk = max(1, 4_000_000 // max(mu.size, 1))
    values = np.concatenate(
        [
            (residues[None, :] / (one_minus[None, :] ** 2 + 2.0 * mu[None, :] * g[:, None])).sum(1)
            for g in np.array_split(grid, max(1, math.ceil(grid.size / chunk)))
        ]
    )
    sign = np.sign(values)
    for k in np.flatnonzero(sign[:-1] * sign[1:] < 0):
        root = brentq(h, grid[k], grid[k + 1], xtol=1e-15 * grid[k], rtol=1e-14)
        q = float(np.sum(residues * mu / (one_minus**2 + 2.0 * mu * root)))
        if q > 0:
            candidates.append(1.0 / q)
    return min(candidates) if candidates else math.inf


def epsilon_bound(problem: DispatchProblem, *, responsive: npt.ArrayLike | None = None) -> float:
    """The exact bound ``epsilon_bar`` of the ICC's linear convergence condition.

    For ``0 < epsilon < epsilon_bar`` the spectral radius of ``D - epsilon e_leader s^T`` is
    below 1 (the iteration's matrix form, module docstring), ``s_i = 1 / (2 c_i)`` for the
    ``responsive`` units (a boolean mask; default every unit, the paper's case without limits)
    and 0 for the others; at ``epsilon_bar`` an eigenvalue reaches the unit circle. In
    currency/kWh per kW of mismatch. ``inf`` when no unit is responsive (the leader's step then
    moves no output, so no bound applies). Costs one symmetric eigendecomposition of the graph
    (cached on the graph) and a one-dimensional root search.
    """
    n = problem.n_units
    mask = np.ones(n, dtype=bool) if responsive is None else np.asarray(responsive, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"responsive must be a boolean mask of shape {(n,)}, got {mask.shape}")
    slope = np.where(mask, problem.slope_kw_per_price, 0.0)
    if not slope.any():
        return math.inf
    mu, q, sqrt_pi = problem.graph._spectrum
    lead = problem.leader
    residues = (q.T @ (slope / sqrt_pi)) * q[lead, :] * sqrt_pi[lead]
    return _first_crossing(mu, residues)


def _optimal_lambda(problem: DispatchProblem) -> float:
    """The optimum's incremental cost, exactly: where ``sum_i clip((lam - b_i)/(2 c_i))`` meets P_D.

    The sum is piecewise linear and non-decreasing in ``lam`` with breakpoints at every unit's
    incremental cost at its limits; sorted once, the crossing is interpolated on its piece. On a
    flat piece at the demand (the demand equal to a sum of limits) the piece's left end is taken.
    """
    s = problem.slope_kw_per_price
    b = problem.cost_linear_per_kwh
    lo = b + problem.output_min_kw / s
    hi = b + problem.output_max_kw / s
    points = np.concatenate([lo, hi])
    change = np.concatenate([s, -s])
    order = np.argsort(points, kind="stable")
    pts = points[order]
    slope_after = np.cumsum(change[order])
    total = np.empty_like(pts)
    total[0] = problem.output_min_kw.sum()
    total[1:] = total[0] + np.cumsum(slope_after[:-1] * np.diff(pts))
    demand = problem.demand_kw
    k = int(np.searchsorted(total, demand, side="left"))
    if k == 0:
        return float(pts[0])
    if k >= pts.size:
        return float(pts[-1])
    gap = total[k] - total[k - 1]
    if gap <= 0:
        return float(pts[k - 1])
    return float(pts[k - 1] + (demand - total[k - 1]) / gap * (pts[k] - pts[k - 1]))


def _responsive_sets(problem: DispatchProblem) -> tuple[BoolArray, BoolArray]:
    """Units strictly inside their limits at the optimum; those and the ones just at a limit."""
    lam = _optimal_lambda(problem)
    raw = (lam - problem.cost_linear_per_kwh) * problem.slope_kw_per_price
    span = problem.output_max_kw - problem.output_min_kw
    tol = _LIMIT_RTOL * np.maximum(1.0, span)
    inside = (raw > problem.output_min_kw + tol) & (raw < problem.output_max_kw - tol)
    near = (np.abs(raw - problem.output_min_kw) <= tol) | (
        np.abs(raw - problem.output_max_kw) <= tol
    )
    near &= span > tol  # a unit with output_min_kw == output_max_kw never responds
    return inside, inside | near


def _solution_bound(problem: DispatchProblem) -> float:
    inside, closed = _responsive_sets(problem)
    bound = epsilon_bound(problem, responsive=inside)
    if (closed != inside).any():
        bound = min(bound, epsilon_bound(problem, responsive=closed))
    return bound


# ---------------------------------------------------------------------------------- the algorithm


@dataclass
class _HeldLambdas:
    """What every receiver holds of each directed edge's sender, gathered from the channel."""

    channel: Channel
    senders: IntArray
    values: FloatArray = field(init=False)

    def start(self, lam: FloatArray) -> None:
        self.values = lam[self.senders].copy()
        # No uplink: the schedules registered are empty (the channel counts one empty message per
        # edge for them). A lone unit has no edge; Channel cannot count per-agent prices for zero
        # agents, so its (empty) registration is a broadcast.
        self.channel.register(
            self.values, np.zeros((0, self.senders.size)), per_agent=bool(self.senders.size)
        )

    def send(self, round_index: int, lam: FloatArray) -> bool:
        """Send ``lam``; update what is held. True when every receiver holds the newest."""
        sent = lam[self.senders]
        held = self.channel.prices_held(round_index, sent)
        if held.size == 0 or (held == round_index).all():
            self.values = sent
            return True
        values = np.empty_like(sent)
        for r in np.unique(held):  # few distinct rounds: a loop over rounds, not over edges
            pick = held == r
            values[pick] = self.channel.price_history[int(r)][pick]
        self.values = values
        return False


def incremental_cost_consensus(
    problem: DispatchProblem,
    *,
    epsilon: float | None = None,
    rule: StoppingRule = StoppingRule(),  # noqa: B008 - frozen, immutable default
    faults: CommsFaults = CommsFaults(),  # noqa: B008 - frozen, immutable default
    initial_output_kw: npt.ArrayLike | None = None,
) -> IterativeResult:
    """Zhang & Chow's incremental cost consensus with a leader (module docstring).

    Parameters
    ----------
    problem:
        Units, demand, communication graph and leader.
    epsilon:
        The leader's convergence coefficient (currency/kWh per kW of mismatch). Refused unless
        ``0 < epsilon < epsilon_bar`` of the units responsive at the optimum (a necessary
        condition for local convergence, :func:`epsilon_bound`); at or above the bound of all
        units (the paper's condition without limits) it warns with
        :class:`~transactive.market.iterative.framework.StepSizeWarning`. Default: 0.3 times
        the smaller bound.
    rule:
        Stopping rule on the relative residuals: primal ``|P_D - sum_i P_i| / P_D``, dual the
        spread of the lambdas the units hold (own and last heard), ``(max - min) / mean |lambda|``.
    faults:
        Loss and delay of the neighbour messages (one channel agent per directed edge).
    initial_output_kw:
        ``(n,)`` outputs at round 0, within the limits, from which each unit starts at its own
        incremental cost ``lambda_i[0] = b_i + 2 c_i P_i[0]``; default the middle of each unit's
        limits.

    Returns
    -------
    IterativeResult
        ``objective`` the cost (currency/h) per round; ``prices`` ``(1,)`` the mean of the units'
        lambdas (currency/kWh; they agree at convergence); ``schedules_kw`` ``(1, n)`` minus the
        outputs (consumption positive); channel counts per directed edge. ``extra``:
        ``lambda_per_kwh`` and ``output_kw`` ``(n,)``, ``mismatch_kw`` per round, ``epsilon``,
        ``epsilon_bound`` (responsive units at the optimum), ``epsilon_bound_all_units``,
        ``messages_per_unit`` (lambda messages each unit sent, registration included).

    Raises
    ------
    ValidationError
        Not a DispatchProblem, a bad initial output, or an epsilon outside its proven range.

    """
    problem = _checked_problem(problem, "incremental cost consensus")
    problems = Problems(subject="incremental cost consensus")
    n = problem.n_units
    pmin, pmax = problem.output_min_kw, problem.output_max_kw
    if initial_output_kw is None:
        p0 = 0.5 * (pmin + pmax)
    else:
        p0 = np.asarray(initial_output_kw, dtype=np.float64)
        if p0.shape != (n,):
            problems.add("initial_output_kw", f"must have shape (n,) = {(n,)}, got {p0.shape}")
            problems.raise_if_any()
        assert problem.ids is not None
        labels = problem.ids.tolist()
        if problems.check(~np.isfinite(p0), "initial_output_kw", "not finite", labels):
            problems.check(
                (p0 < pmin) | (p0 > pmax), "initial_output_kw",
                "outside [output_min_kw, output_max_kw]", labels,
            )  # fmt: skip
        problems.raise_if_any()
        p0 = p0.copy()

    bound_all = epsilon_bound(problem)
    bound_solution = _solution_bound(problem)
    bound = min(bound_all, bound_solution)
    if epsilon is None:
        eps = DEFAULT_EPSILON_SHARE * bound
    else:
        eps = checked_step_size(
            "epsilon",
            epsilon,
            upper=bound_solution if math.isfinite(bound_solution) else None,
            reference=_BOUND_REFERENCE + ", responsive = inside their limits at the optimum",
        )
        if math.isfinite(bound_all):
            eps = checked_step_size(
                "epsilon",
                eps,
                upper=bound_all,
                bound_is_necessary=False,
                reference=_BOUND_REFERENCE + ", every unit responsive (no limits)",
            )

    graph = problem.graph
    senders, receivers = graph.directed_edges
    weights = graph.edge_weights
    self_w = graph.self_weights
    mix = graph.update_matrix()
    off_diag = mix - sparse.diags(self_w)
    channel = Channel(faults, int(senders.size))
    held = _HeldLambdas(channel, senders)
    b, s = problem.cost_linear_per_kwh, problem.slope_kw_per_price
    demand, lead = problem.demand_kw, problem.leader

    lam = b + p0 / s  # lambda_i[0] = b_i + 2 c_i P_i[0]
    output = p0
    held.start(lam)
    fresh = True
    rec = Recorder("incremental-cost-consensus", rule)
    mismatches: list[float] = []
    while True:
        k = rec.round_index + 1
        mismatch_prev = demand - float(output.sum())  # measured by the leader
        if fresh:  # every receiver holds its neighbours' newest lambdas: D lambda
            mixed = off_diag @ lam
        else:
            mixed = np.bincount(receivers, weights=weights * held.values, minlength=n)
        lam = self_w * lam + mixed  # followers: lambda_i[k] = sum_j d_ij lambda_j[k-1]
        lam[lead] += eps * mismatch_prev  # the leader adds epsilon DeltaP
        output = problem.output_at(lam)  # P_i = (lambda_i - b_i) / (2 c_i), clipped
        mismatch = demand - float(output.sum())
        mismatches.append(mismatch)
        fresh = held.send(k, lam)
        hi = max(float(lam.max()), float(held.values.max(initial=-math.inf)))
        lo = min(float(lam.min()), float(held.values.min(initial=math.inf)))
        scale = max(float(np.abs(lam).mean()), 1e-12)
        cost = dispatch_cost_per_h(problem, output)
        if rec.record(abs(mismatch) / demand, (hi - lo) / scale, cost):
            break

    assert problem.ids is not None
    return rec.result(
        prices=np.array([float(lam.mean())]),
        schedules_kw=-output[None, :],
        ids=problem.ids,
        channel=channel,
        extra={
            "lambda_per_kwh": lam.copy(),
            "output_kw": output.copy(),
            "mismatch_kw": np.asarray(mismatches, dtype=np.float64),
            "epsilon": np.array([eps]),
            "epsilon_bound": np.array([bound_solution]),
            "epsilon_bound_all_units": np.array([bound_all]),
            "messages_per_unit": np.array([channel.messages_down / n]),
        },
    )


# ---------------------------------------------------------------------------------- centralized


def centralized_dispatch(problem: DispatchProblem) -> CentralizedOptimum:
    """The same dispatch as one cvxpy problem, solved by Clarabel.

    ``min sum_i a_i + b_i P_i + c_i P_i^2`` s.t. ``sum_i P_i = P_D`` and the limits, with outputs
    in units of the largest limit magnitude (for the solver's scaling). ``prices`` ``(1,)`` is the
    balance constraint's multiplier (currency/kWh), the optimal incremental cost; ``schedules_kw``
    ``(1, n)`` minus the outputs (consumption positive); ``objective`` the cost (currency/h) by
    :func:`dispatch_cost_per_h`; ``solve_time_s`` Clarabel's own solve time.
    """
    problem = _checked_problem(problem, "centralized dispatch")
    pmin, pmax = problem.output_min_kw, problem.output_max_kw
    largest = max(float(np.abs(pmin).max()), float(np.abs(pmax).max()))
    scale = max(largest, problem.demand_kw / problem.n_units)
    x = cp.Variable(problem.n_units)
    lin = problem.cost_linear_per_kwh * scale
    quad = problem.cost_quadratic_per_kwh_per_kw * scale**2
    cost = lin @ x + cp.sum(cp.multiply(quad, cp.square(x)))
    balance = cp.sum(x) == problem.demand_kw / scale
    constraints = [balance, x >= pmin / scale, x <= pmax / scale]
    prob = cp.Problem(cp.Minimize(cost), constraints)
    prob.solve(solver=cp.CLARABEL)
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        raise RuntimeError(f"Clarabel did not solve the dispatch problem: {prob.status}")
    output = np.clip(np.asarray(x.value, dtype=np.float64) * scale, pmin, pmax)
    # cvxpy's multiplier of sum(x) == D is -(d cost / d x_i) = -scale lambda
    lam = -float(np.asarray(balance.dual_value)) / scale
    stats = prob.solver_stats
    solve_time = stats.solve_time if stats is not None and stats.solve_time is not None else None
    return CentralizedOptimum(
        objective=dispatch_cost_per_h(problem, output),
        schedules_kw=-output[None, :],
        prices=np.array([lam]),
        solver=f"CLARABEL ({prob.status})",
        solve_time_s=float(solve_time) if solve_time is not None else float("nan"),
    )
